"""Peer exchange (PEX) of the mesh node (mixed into loranode.node.Node).

Pull, anti-entropy: every `pex_interval_s` we ask ONE verified direct neighbour (round
robin, never the one asked last) with a PEX_REQUEST naming the 4-byte prefixes of our
16 most recently learned records. Idle rounds (nothing new since the last one) back
off, doubling up to PEX_IDLE_MAX intervals. When we learn something new, up to
PEX_BURST_MAX quick rounds follow (PEX_FAST_MS apart, longer in a dense neighbourhood
and when the background budget is half spent).

The neighbour answers with up to PEX_ANSWER_MAX records, one signed record per
PEX_RESPONSE frame, newest first, skipping what the asker is known to hold: the
request's `have` list, and the records the asker's own answers carried (a "neighbour i
holds record j" bit matrix, evidence only). Records it broadcast in the last
PEX_RESEND_MS come last. A direct asker gets a one-hop BROADCAST answer, so every
neighbour overhears the records (free push); a multi-hop asker a unicast. Each asker is
answered at most once per PEX_ANSWER_GAP_MS; unknown askers get nothing. If the
asker's `have` list names records we lack, we pull from it next (targeted round), so
news flows both ways. Records learned by PEX have HOPS_UNKNOWN hops and the answering
neighbour as next hop.
"""

from loranode.announce import rand
from loranode.txqueue import GOSSIP
from lorawire import messages as msg

HOPS_UNKNOWN = 255
PEX_WANT = 16
PEX_ANSWER_MAX = 6
PEX_ANSWER_GAP_MS = 10000
PEX_FIRST_MS = 8000
PEX_FAST_MS = 5000  # earliest next PEX round after one that brought news
PEX_BURST_MAX = 2  # quick rounds after news
PEX_IDLE_MAX = 4  # idle PEX rounds back off to at most this many intervals
PEX_RESEND_MS = 60000  # a record we broadcast is not offered again this soon


class PeerExchange:
    """Held records (rec_* slots of the node) and the PEX rounds and answers."""

    # "neighbour in slot i holds the record in slot j" bits, from evidence only: the
    # `have` list of its PEX requests and the records its PEX answers carry. An answer
    # skips what the asker is known to hold (a have list names at most 16 records).
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

    def _slot_of_public(self, public):
        pt = self.peers
        for k in pt.slots():
            if pt.keys[k] == public and self.rec_id[k] == pt.ids[k]:
                return k
        return -1

    def _store_record(self, s, rec):
        self._forget_marks(s, self.rec_id[s] != rec.id)
        self.rec_t[s] = self.clock.now()
        self.rec_tx[s] = -PEX_RESEND_MS
        self.rec_id[s] = rec.id
        self.rec_seq[s] = rec.seq
        self.rec_enc[s] = rec.encoded

    def _fast_ms(self, mono):
        """Gap between quick PEX rounds: longer in a dense neighbourhood (each answer is
        overheard by more nodes there) and while the background budget runs low."""
        t = mono & self._mask
        nb = len(self.neighbours(t))
        ms = PEX_FAST_MS * (nb if nb > 2 else 2) // 2
        d = self.duty
        bg = d.used_ms(self.freq, mono, True)
        if 2 * bg > d.budget_ms(self.freq, True):
            ms *= 4
        return ms

    def _pex_soon(self, mono):
        """Bring the next PEX round forward (at most one per _fast_ms)."""
        soon = self._pex_last + self._fast_ms(mono)
        if soon < mono:
            soon = mono
        soon += rand(PEX_FAST_MS // 2 + 1)
        if soon < self._pex_due:
            self._pex_due = soon

    def _lacks_any(self, prefixes):
        pt = self.peers
        for p in prefixes:
            if p == self.id[:4]:
                continue
            found = False
            for k in pt.slots():
                rid = self.rec_id[k]
                if rid is not None and rid[:4] == p:
                    found = True
                    break
            if not found:
                return True
        return False

    def _on_pex_request(self, v, t, mono):
        c = self.c
        c["pex_req_rx"] += 1
        f = v.frame
        pt = self.peers
        s = pt.find(f.source)
        if not self._held(s, f.source):
            c["pex_unknown"] += 1
            return
        if mono - self.pex_answered[s] < PEX_ANSWER_GAP_MS:
            c["pex_limited"] += 1
            return
        have = v.value[1]
        want = v.value[0]
        # anti-entropy both ways: the asker's `have` list names records it holds; if
        # some are unknown here, ask the asker back soon (pull, rate-limited like any
        # round), so news also flows against the direction of the request
        if pt.hops[s] == 0 and self._lacks_any(have):
            self._pex_target = f.source
            self._pex_soon(mono)
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
        # newest first: news is what the asker most likely lacks
        for p in have:
            for k in pt.slots():
                rid = self.rec_id[k]
                if rid is not None and rid[:4] == p:
                    self._mark(s, k)
                    break
        for k in self._newest(s, want, None, mono if dest is None else None, s):
            if dest is None:
                self.rec_tx[k] = mono
            body = b"\x81\x00\x91" + self.rec_enc[k]  # {0: [record]}, canonical msgpack
            if self._queue(msg.PEX_RESPONSE, body, dest, hops, GOSSIP, mono) is not None:
                c["pex_resp_tx"] += 1
                self.pex_answered[s] = mono  # only an answer that carried records counts

    def _newest(self, skip, limit, exclude=None, mono=None, holder=-1):
        """Up to `limit` slots holding records, most recently learned first; never slot
        `skip`, nor records whose 4-byte id prefix is in `exclude`. With `mono`, records
        we broadcast less than PEX_RESEND_MS ago come last: our neighbours most likely
        overheard them then (allocates a little)."""
        pt = self.peers
        out = []
        for k in pt.slots():
            rid = self.rec_id[k]
            if k == skip or rid is None or rid != pt.ids[k]:
                continue
            if exclude is not None and rid[:4] in exclude:
                continue
            if holder >= 0 and self._marked(holder, k):
                continue
            out.append(k)
        rt = self.rec_t
        if mono is None:
            out.sort(key=lambda k: -rt[k])
        else:
            tx = self.rec_tx
            out.sort(key=lambda k: (mono - tx[k] < PEX_RESEND_MS, -rt[k]))
        return out[:limit]

    def _on_pex_response(self, v, rssi, snr, t, mono):
        self.c["pex_resp_rx"] += 1
        f = v.frame
        via = f.source if f.hop_count == 0 else None
        i = self.peers.find(f.source) if via is not None else -1
        if not self._held(i, f.source):
            i = -1
        for value in v.value[0]:
            rec = self._check_record(v, value, None, t)
            if rec is not None:
                self._admit(rec, t, mono, None, None, HOPS_UNKNOWN, via)
            if i >= 0 and isinstance(value, dict):
                j = self._slot_of_public(value.get(0))
                if j >= 0:
                    self._mark(i, j)  # it sent the record: it holds it

    def pex_round(self, mono):
        t = mono & self._mask
        nb = self.neighbours(t)
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
        have = [pt.ids[k][:4] for k in self._newest(s, msg.PEX_HAVE_MAX)]
        want = pt.capacity - pt.count
        if want < 1:
            want = 1
        if want > PEX_WANT:
            want = PEX_WANT
        body = msg.encode_pex_request(want, have)
        # network tag: the neighbour may not hold our record yet (its copy of our
        # announce may have been lost), and a request proves nothing worth blaming
        if self._queue(msg.PEX_REQUEST, body, pt.ids[s], 0, GOSSIP, mono) is not None:
            self.c["pex_req_tx"] += 1
        return True

    def pex_tick(self, mono):
        """A PEX round, then the time of the next one (timer task, when it is due)."""
        self.pex_round(mono)
        self._pex_last = mono
        if self._pex_burst > 0:
            self._pex_burst -= 1
            fast = self._fast_ms(mono)
            self._pex_due = mono + fast + rand(fast // 2 + 1)
        else:
            # idle rounds back off (doubling up to PEX_IDLE_MAX x the interval,
            # and never beyond the announce maximum): a stable mesh must not
            # spend its budget asking for what it has, yet a lost nudge from a
            # neighbour must not stall news for long
            if self.c["new_peers"] == self._pex_news:
                cap = self.pex_ms * PEX_IDLE_MAX
                if cap > self.announcer.max_ms:
                    cap = self.announcer.max_ms
                self._pex_idle = min(2 * self._pex_idle, cap)
            else:
                self._pex_idle = self.pex_ms
            iv = self._pex_idle
            self._pex_due = mono + iv * 3 // 4 + rand(iv // 2 + 1)
        self._pex_news = self.c["new_peers"]
