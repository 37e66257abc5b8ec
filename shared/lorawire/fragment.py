"""Fragmentation of messages too large for one frame, and bounded reassembly.

A FRAGMENT frame's body is the array [msg_id (u16), index, count, chunk (bin)], with
1 <= count <= MAX_FRAGMENTS, index < count and a non-empty chunk. Every chunk but the
last has the same length; the last is no longer than the others. The reassembled
bytes are the fragmented message (lorawire.messages defines them as the inner message
type byte followed by the inner body).

The Reassembler keeps a fixed number of slots keyed by (source, msg_id). Buffered bytes
never exceed slots * max_message, whatever arrives: sizes are checked against
max_message as soon as a fragment shows them and a slot lives at most timeout_ms after
its first fragment.

Slots go to sources in proportion. One source holds at most per_source slots. When
every slot is busy, a new message takes a slot from the source holding the most, if
that source holds at least two more than the newcomer's source does (the oldest of
them), else the slot of the oldest message that has held its slot for hold_ms or more;
with neither it is refused (BUSY). So sources opening messages they never finish can
keep an honest source out only while they hold slots younger than hold_ms and no more
than their share: two sources re-opening first fragments whenever their slots time out
no longer shut out a third, and a message is sure of its slot for hold_ms.

Attribution: `add` takes whether the fragment's frame was attributed (link-tagged, see
lorawire.auth). A message counts as attributed only if every fragment was; after `add`
returns a message, `attributed` says whether it was, and a ReassemblyError carries the
same for the message it refused (lorawire.auth.blame turns it into a misbehaviour).
"""

from lorawire.codec import packb, unpackb
from lorawire.errors import DecodeError
from lorawire.frame import MAX_LORA_FRAME, OVERHEAD_BROADCAST, OVERHEAD_UNICAST

MAX_FRAGMENTS = 16
MSG_ID_MAX = 0xFFFF

DEFAULT_SLOTS = 4
DEFAULT_TIMEOUT_MS = 30000
DEFAULT_MAX_MESSAGE = 4096

# fixarray(4) + msg_id as uint16 (worst case) + fixint index + fixint count.
_FIXED_OVERHEAD = 1 + 3 + 1 + 1

# Rejection reasons (ReassemblyError.reason).
MALFORMED = "malformed"  # fragment fields outside the schema
OVERSIZE = "oversize"  # the message would exceed max_message
INCONSISTENT = "inconsistent"  # count, chunk length or content contradicts earlier fragments
BUSY = "busy"  # every slot holds a live message
QUOTA = "quota"  # this source already holds its share of the slots


class ReassemblyError(DecodeError):
    """A fragment was refused. `source` is who sent it, `reason` one of the constants above.

    BUSY is about our capacity, not the sender's behaviour; the others are evidence
    against `source` only as far as the frame's tag proves it came from there.
    """

    def __init__(self, reason, source, msg_id, detail="", attributed=False):
        super().__init__("%s fragment: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.source = source
        self.msg_id = msg_id
        self.attributed = attributed  # this fragment and every earlier one of its message


def chunk_for_body(mtu_body):
    """Largest chunk whose fragment body encodes to at most `mtu_body` bytes."""
    room = mtu_body - _FIXED_OVERHEAD
    chunk = room - 2  # bin8
    if chunk > 0xFF:
        chunk = max(room - 3, 0xFF)  # bin16
        if chunk > 0xFFFF:
            chunk = max(room - 5, 0xFFFF)  # bin32
    if chunk < 1:
        raise ValueError("MTU too small for a fragment")
    return chunk


def max_chunk(mtu=MAX_LORA_FRAME, unicast=False):
    """Largest chunk so that the whole FRAGMENT frame (header + body + tag) fits in `mtu`."""
    return chunk_for_body(mtu - (OVERHEAD_UNICAST if unicast else OVERHEAD_BROADCAST))


def max_message(mtu=MAX_LORA_FRAME, unicast=False):
    """Largest message that can be fragmented for this MTU."""
    return MAX_FRAGMENTS * max_chunk(mtu, unicast)


def split(message, msg_id, mtu_body):
    """FRAGMENT bodies (encoded) carrying `message`, each at most `mtu_body` bytes.

    ValueError if the message is empty, msg_id is not a u16, or more than MAX_FRAGMENTS
    fragments would be needed.
    """
    if isinstance(msg_id, bool) or not isinstance(msg_id, int) or not 0 <= msg_id <= MSG_ID_MAX:
        raise ValueError("msg_id must be a u16")
    n = len(message)
    if n == 0:
        raise ValueError("empty message")
    chunk = chunk_for_body(mtu_body)
    count = (n + chunk - 1) // chunk
    if count > MAX_FRAGMENTS:
        raise ValueError(
            "message of %d bytes needs %d fragments (max %d)" % (n, count, MAX_FRAGMENTS)
        )
    message = bytes(message)
    out = []
    for index in range(count):
        out.append(packb([msg_id, index, count, message[index * chunk : (index + 1) * chunk]]))
    return out


def check_fields(value):
    """Validate a decoded fragment body; returns (msg_id, index, count, chunk)."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise DecodeError("fragment body must be an array of 4")
    msg_id, index, count, chunk = value
    for item, top, what in ((msg_id, MSG_ID_MAX, "msg_id"), (count, MAX_FRAGMENTS, "count")):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0 or item > top:
            raise DecodeError("fragment %s must be an int in 0..%d" % (what, top))
    if count < 1:
        raise DecodeError("fragment count must be at least 1")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise DecodeError("fragment index must be an int below count")
    if not isinstance(chunk, bytes) or not chunk:
        raise DecodeError("fragment chunk must be non-empty bytes")
    return msg_id, index, count, chunk


def decode(body):
    """Parse an encoded FRAGMENT body; returns the checked value [msg_id, index, count, chunk]."""
    value = unpackb(body)
    check_fields(value)
    return value


class _Slot:
    __slots__ = (
        "source",
        "msg_id",
        "count",
        "chunk_len",
        "last_len",
        "received",
        "size",
        "started",
        "chunks",
        "attributed",
    )

    def __init__(self):
        self.chunks = [None] * MAX_FRAGMENTS
        self.clear()

    def clear(self):
        self.source = None
        self.msg_id = -1
        self.count = 0
        self.chunk_len = 0
        self.last_len = 0
        self.received = 0
        self.size = 0
        self.started = 0
        self.attributed = False
        for i in range(MAX_FRAGMENTS):
            self.chunks[i] = None


class Reassembler:
    """Fixed-slot reassembly. Counters: completed, duplicates, expired, evicted, rejected."""

    def __init__(
        self,
        slots=DEFAULT_SLOTS,
        timeout_ms=DEFAULT_TIMEOUT_MS,
        max_message=DEFAULT_MAX_MESSAGE,
        per_source=None,
        hold_ms=None,
    ):
        if slots < 1 or timeout_ms < 1 or max_message < 1:
            raise ValueError("slots, timeout_ms and max_message must be positive")
        self.slots = [_Slot() for _ in range(slots)]
        self.timeout_ms = timeout_ms
        self.max_message = max_message
        # One source may hold at most half the slots, so it cannot lock others out.
        self.per_source = per_source if per_source else max(1, slots // 2)
        # Under contention a message is sure of its slot for half the timeout.
        self.hold_ms = hold_ms if hold_ms else max(1, timeout_ms // 2)
        # Recently completed (source, msg_id, time): a late copy of one of their
        # fragments (relays repeat frames) is a duplicate, not the start of a new message.
        self._done = [None] * (2 * slots)
        self._done_pos = 0
        self.completed = 0
        self.duplicates = 0
        self.expired = 0
        self.evicted = 0
        self.rejected = 0
        self.attributed = False  # of the message the last add completed

    def live_slots(self):
        return sum(1 for s in self.slots if s.source is not None)

    def buffered_bytes(self):
        return sum(s.size for s in self.slots if s.source is not None)

    def expire(self, now_ms):
        """Free slots older than timeout_ms (or started in the future: clock went back)."""
        freed = 0
        for slot in self.slots:
            if slot.source is None:
                continue
            age = now_ms - slot.started
            if age < 0 or age >= self.timeout_ms:
                slot.clear()
                freed += 1
        self.expired += freed
        return freed

    def _recently_done(self, source, msg_id, now_ms):
        for entry in self._done:
            if entry is not None and entry[0] == source and entry[1] == msg_id:
                if 0 <= now_ms - entry[2] < self.timeout_ms:
                    return True
        return False

    def _victim(self, mine, now_ms):
        """The slot a new message from a source holding `mine` slots may take, or None."""
        most = stale = None
        most_n = mine + 1
        for s in self.slots:
            n = 0
            for o in self.slots:
                if o.source == s.source:
                    n += 1
            if n > most_n or (n == most_n and most is not None and s.started < most.started):
                most = s
                most_n = n
            if now_ms - s.started >= self.hold_ms and (stale is None or s.started < stale.started):
                stale = s
        return most if most is not None else stale

    def _reject(self, reason, source, msg_id, detail, attributed, slot=None):
        """Count a refusal and free `slot`; the ReassemblyError for the caller to raise."""
        if slot is not None:
            slot.clear()
        self.rejected += 1
        return ReassemblyError(reason, source, msg_id, detail, attributed)

    def add(self, source, fields, now_ms, attributed=False):
        """Take one fragment (its decoded body) from `source`; `attributed`: its frame was.

        Returns the complete message bytes when this fragment completes it (`attributed`
        then says whether every fragment was), else None (stored, or a duplicate, which
        is counted and ignored). Raises ReassemblyError (a DecodeError) naming `source`
        when the fragment is refused; a refusal for OVERSIZE or INCONSISTENT on a
        message in progress abandons that message.
        """
        try:
            msg_id, index, count, chunk = check_fields(fields)
        except DecodeError as exc:
            raise self._reject(MALFORMED, source, None, str(exc), attributed) from exc
        n = len(chunk)
        last = index == count - 1
        if count == 1:
            if n > self.max_message:
                raise self._reject(OVERSIZE, source, msg_id, "%d bytes" % n, attributed)
            self.completed += 1
            self.attributed = attributed
            return chunk
        self.expire(now_ms)
        slot = None
        mine = 0
        free = None
        for s in self.slots:
            if s.source is None:
                if free is None:
                    free = s
            elif s.source == source:
                if s.msg_id == msg_id:
                    slot = s
                mine += 1
        if slot is None and self._recently_done(source, msg_id, now_ms):
            self.duplicates += 1
            return None
        if slot is not None:
            attributed = attributed and slot.attributed
            slot.attributed = attributed
            if slot.count != count:
                what = "count %d then %d" % (slot.count, count)
                raise self._reject(INCONSISTENT, source, msg_id, what, attributed, slot)
            held = slot.chunks[index]
            if held is not None:
                if held == chunk:
                    self.duplicates += 1
                    return None
                what = "two chunks for one index"
                raise self._reject(INCONSISTENT, source, msg_id, what, attributed, slot)
            chunk_len = slot.chunk_len
            last_len = slot.last_len
        else:
            chunk_len = 0
            last_len = 0
        if last:
            last_len = n
        elif chunk_len == 0:
            chunk_len = n
        elif n != chunk_len:
            what = "chunk length differs"
            raise self._reject(INCONSISTENT, source, msg_id, what, attributed, slot)
        if chunk_len and last_len > chunk_len:
            what = "last chunk longer than the others"
            raise self._reject(INCONSISTENT, source, msg_id, what, attributed, slot)
        # Smallest total these lengths allow: refuse as soon as it cannot fit.
        if chunk_len:
            least = (count - 1) * chunk_len + (last_len or 1)
        else:
            least = count * last_len
        if least > self.max_message:
            what = "at least %d bytes" % least
            raise self._reject(OVERSIZE, source, msg_id, what, attributed, slot)
        if slot is None:
            if mine >= self.per_source:
                raise self._reject(QUOTA, source, msg_id, "%d slots held" % mine, attributed)
            if free is None:
                free = self._victim(mine, now_ms)
                if free is None:
                    what = "all %d slots busy" % len(self.slots)
                    raise self._reject(BUSY, source, msg_id, what, attributed)
                free.clear()
                self.evicted += 1
            slot = free
            slot.source = source
            slot.msg_id = msg_id
            slot.count = count
            slot.started = now_ms
            slot.attributed = attributed
        slot.chunk_len = chunk_len
        slot.last_len = last_len
        slot.chunks[index] = chunk
        slot.received += 1
        slot.size += n
        if slot.received < count:
            return None
        # chunks and _done are preallocated [None] * n: mypy takes them for lists of None only
        message = b"".join(slot.chunks[:count])  # type: ignore[arg-type]
        self.attributed = slot.attributed
        slot.clear()
        self._done[self._done_pos] = (source, msg_id, now_ms)  # type: ignore[call-overload]
        self._done_pos = (self._done_pos + 1) % len(self._done)
        self.completed += 1
        return message
