"""Peer exchange (PEX) of the mesh node (mixed into loranode.node.Node).

Pull, anti-entropy: every `pex_interval_s` we ask ONE verified direct neighbour (round
robin, never the one asked last) with a PEX_REQUEST naming the 4-byte prefixes of our
16 most recently learned records. Idle rounds (nothing new since the last one) back
off, doubling up to PEX_IDLE_MAX intervals. When we learn something new, up to
PEX_BURST_MAX quick rounds follow (PEX_FAST_MS apart, longer in a dense neighbourhood
and when the background budget is half spent).

The neighbour answers with up to PEX_ANSWER_MAX records (the ones its peer table holds,
loranode.peers), one signed record per PEX_RESPONSE frame, newest first, skipping what
the asker is known to hold: the request's `have` list, and the records the asker's own
answers carried (a "neighbour i holds record j" bit matrix, evidence only). Records it
broadcast in the last PEX_RESEND_MS come last. A direct asker gets a one-hop BROADCAST
answer, so every neighbour overhears the records (free push); a multi-hop asker a
unicast. Each asker is answered at most once per PEX_ANSWER_GAP_MS; unknown askers get
nothing. If the asker's `have` list names records we lack, we pull from it next
(targeted round), so news flows both ways. Records learned by PEX have HOPS_UNKNOWN hops
and the answering neighbour as next hop.

Per-slot state (when a slot's record was last broadcast, when its peer was last answered,
the bit matrix) is reset by the peer table's `on_clear` hook whenever a slot is freed.
"""

from loranode import counters as C
from loranode.announce import rand
from loranode.clock import add, diff
from loranode.txqueue import GOSSIP
from lorawire import messages as msg
from lorawire.identity import node_id

try:
    from micropython import const
except ImportError:  # CPython: every const() here is an int
    const = int

HOPS_UNKNOWN = const(255)
PEX_WANT = const(16)
PEX_ANSWER_MAX = const(6)
PEX_ANSWER_GAP_MS = const(10000)
PEX_FIRST_MS = const(8000)
PEX_FAST_MS = const(5000)  # earliest next PEX round after one that brought news
PEX_BURST_MAX = const(2)  # quick rounds after news
PEX_IDLE_MAX = const(4)  # idle PEX rounds back off to at most this many intervals
PEX_RESEND_MS = const(60000)  # a record we broadcast is not offered again this soon


class PeerExchange:
    """PEX rounds and answers over the records held in the peer table."""

    def _init_pex(self, n):
        self._row = (n + 7) // 8
        # "neighbour in slot i holds the record in slot j" bits, from evidence only: the
        # `have` list of its PEX requests and the records its PEX answers carry
        self.holds = bytearray(n * self._row)
        self.rec_tx = [0] * n  # tick we last broadcast the slot's record
        self.pex_answered = [0] * n  # tick of the last answer to the slot's peer
        self.peers.on_clear = self._pex_cleared
        self._pex_rr = 0
        self._pex_target = None
        self._pex_burst = 0
        self._pex_news = 0
        self._pex_last_id = None
        self._pex_last = 0
        self._pex_idle = self.pex_ms

    def pex_first_ms(self):
        return PEX_FIRST_MS + rand(PEX_FIRST_MS)

    def _mark(self, i, j):
        self.holds[i * self._row + (j >> 3)] |= 1 << (j & 7)

    def _marked(self, i, j):
        return self.holds[i * self._row + (j >> 3)] & (1 << (j & 7))

    def _forget_marks(self, s, whole_row):
        h = self.holds
        r = self._row
        bit = ~(1 << (s & 7)) & 0xFF
        for i in range(self.peers.capacity):
            h[i * r + (s >> 3)] &= bit
        if whole_row:
            for b in range(s * r, s * r + r):
                h[b] = 0

    def _pex_cleared(self, s):
        self._forget_marks(s, True)

    def pex_new_record(self, s, now):
        """Slot s holds its peer's first record: it may be answered at once."""
        self.pex_answered[s] = add(now, -PEX_ANSWER_GAP_MS)

    def pex_store(self, s, rec, now):
        """Keep the verified record `rec` for slot s (who holds the old one is unknown)."""
        self._forget_marks(s, False)
        self.rec_tx[s] = add(now, -PEX_RESEND_MS)
        self.peers.store_record(s, rec.encoded, rec.seq, now)

    def _slot_of_public(self, public):
        if not isinstance(public, bytes) or len(public) != 32:
            return -1
        s = self.peers.find(node_id(public))
        return s if self.peers.has_record(s) else -1

    def _fast_ms(self, now):
        """Gap between quick PEX rounds: longer in a dense neighbourhood (each answer is
        overheard by more nodes there) and while the background budget runs low."""
        nb = len(self.neighbours(now))
        ms = PEX_FAST_MS * (nb if nb > 2 else 2) // 2
        d = self.duty
        if 2 * d.used_ms(now, True) > d.budget_ms(True):
            ms *= 4
        return ms

    def _pex_soon(self, now):
        """Bring the next PEX round forward (at most one per _fast_ms)."""
        soon = add(self._pex_last, self._fast_ms(now))
        if diff(soon, now) < 0:
            soon = now
        soon = add(soon, rand(PEX_FAST_MS // 2 + 1))
        if diff(soon, self.due[0]) < 0:
            self.due[0] = soon

    def _held_prefix(self, p):
        pt = self.peers
        for k in pt.slots():
            if pt.rec[k] is not None and pt.ids[k][:4] == p:
                return k
        return -1

    def _on_pex_request(self, v, now):
        c = self.c
        c[C.PEX_REQ_RX] += 1
        f = v.frame
        pt = self.peers
        s = pt.find(f.source)
        if not pt.has_record(s):
            c[C.PEX_UNKNOWN] += 1
            return
        if diff(now, self.pex_answered[s]) < PEX_ANSWER_GAP_MS:
            c[C.PEX_LIMITED] += 1
            return
        want = v.value[0]
        have = v.value[1]
        # anti-entropy both ways: the asker's `have` list names records it holds; if
        # some are unknown here, ask the asker back soon (pull, rate-limited like any
        # round), so news also flows against the direction of the request
        lacks = False
        for p in have:
            k = self._held_prefix(p)
            if k >= 0:
                self._mark(s, k)
            elif p != self.id[:4]:
                lacks = True
        if lacks and pt.hops[s] == 0:
            self._pex_target = f.source
            self._pex_soon(now)
        if want > PEX_ANSWER_MAX:
            want = PEX_ANSWER_MAX
        # Direct askers get a one-hop BROADCAST answer: every neighbour overhears the
        # signed records and learns them too (push for free, no extra airtime), which
        # is what makes knowledge cross a long line quickly. A multi-hop asker gets a
        # unicast routed back along its hop count.
        hops = pt.hops[s]
        dest = None if hops == 0 else f.source
        if hops == HOPS_UNKNOWN:
            hops = self.hop_limit
        for k in self._newest(s, want, None, now, dest is None, s):
            if dest is None:
                self.rec_tx[k] = now
            body = b"\x81\x00\x91" + pt.rec[k]  # {0: [record]}, canonical msgpack
            if self._queue(msg.PEX_RESPONSE, body, dest, hops, GOSSIP, now) is not None:
                c[C.PEX_RESP_TX] += 1
                self.pex_answered[s] = now  # only an answer that carried records counts

    def _newest(self, skip, limit, exclude, now, resend_last=False, holder=-1):
        """Up to `limit` slots holding records, most recently learned first; never slot
        `skip`, nor records whose 4-byte id prefix is in `exclude`, nor those `holder` is
        known to hold. With `resend_last`, records we broadcast less than PEX_RESEND_MS
        ago come last: our neighbours most likely overheard them then (allocates a little)."""
        pt = self.peers
        out = []
        for k in pt.slots():
            if k == skip or pt.rec[k] is None:
                continue
            if exclude is not None and pt.ids[k][:4] in exclude:
                continue
            if holder >= 0 and self._marked(holder, k):
                continue
            out.append(k)
        rt = pt.rec_t
        if resend_last:
            tx = self.rec_tx
            out.sort(key=lambda k: (diff(now, tx[k]) < PEX_RESEND_MS, diff(now, rt[k])))
        else:
            out.sort(key=lambda k: diff(now, rt[k]))
        return out[:limit]

    def _on_pex_response(self, v, now):
        self.c[C.PEX_RESP_RX] += 1
        f = v.frame
        via = f.source if f.hop_count == 0 else None
        pt = self.peers
        i = pt.find(f.source) if via is not None else -1
        if not pt.has_record(i):
            i = -1
        for value in v.value[0]:
            rec = self._check_record(v, value, None, now)
            if rec is not None:
                self._admit(rec, now, None, None, HOPS_UNKNOWN, via)
            if i >= 0 and isinstance(value, dict):
                j = self._slot_of_public(value.get(0))
                if j >= 0:
                    self._mark(i, j)  # it sent the record: it holds it

    def pex_round(self, now):
        nb = self.neighbours(now)
        if not nb:
            return False
        pt = self.peers
        s = -1
        if self._pex_target is not None:
            s = pt.find(self._pex_target)
            self._pex_target = None
        if s not in nb:
            # round robin, never the neighbour asked last time (when there is another):
            # a targeted pull does not make the next round repeat the same neighbour
            for _ in range(len(nb)):
                self._pex_rr = (self._pex_rr + 1) % len(nb)
                s = nb[self._pex_rr]
                if pt.ids[s] != self._pex_last_id:
                    break
        self._pex_last_id = pt.ids[s]
        # the records we learned most recently: those are the ones a neighbour is
        # likely to offer us, so naming them saves the most duplicate answers
        have = [pt.ids[k][:4] for k in self._newest(s, msg.PEX_HAVE_MAX, None, now)]
        want = pt.capacity - pt.count
        if want < 1:
            want = 1
        if want > PEX_WANT:
            want = PEX_WANT
        body = msg.encode_pex_request(want, have)
        # network tag: the neighbour may not hold our record yet (its copy of our
        # announce may have been lost), and a request proves nothing worth blaming
        if self._queue(msg.PEX_REQUEST, body, pt.ids[s], 0, GOSSIP, now) is not None:
            self.c[C.PEX_REQ_TX] += 1
        return True

    def pex_tick(self, now):
        """A PEX round, then the time of the next one (timer task, when it is due)."""
        self.pex_round(now)
        self._pex_last = now
        if self._pex_burst > 0:
            self._pex_burst -= 1
            fast = self._fast_ms(now)
            self.due[0] = add(now, fast + rand(fast // 2 + 1))
        else:
            # idle rounds back off (doubling up to PEX_IDLE_MAX x the interval, and never
            # beyond the announce maximum): a stable mesh must not spend its budget
            # asking for what it has, yet a lost nudge must not stall news for long
            if self.c[C.NEW_PEERS] == self._pex_news:
                cap = self.pex_ms * PEX_IDLE_MAX
                if cap > self.announcer.max_ms:
                    cap = self.announcer.max_ms
                self._pex_idle = min(2 * self._pex_idle, cap)
            else:
                self._pex_idle = self.pex_ms
            iv = self._pex_idle
            self.due[0] = add(now, iv * 3 // 4 + rand(iv // 2 + 1))
        self._pex_news = self.c[C.NEW_PEERS]
