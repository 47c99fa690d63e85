"""A fake serial port that plays an expected dialogue, for byte-exact driver tests.

    port = ExpectedDialogue([(b"*IDN?\\n", b"YOKOGAWA,WT310,1,1\\n"), (b"", b"unsolicited\\n")])
    ... drive the meter on `port` ...
    port.assert_done()

Each pair is (bytes the driver must send, bytes the instrument answers). The answer is queued
as soon as the sent bytes match; a pair whose expected bytes are empty is answered at once
(records a meter pushes on its own). Sending anything that is not the next expected bytes
fails at that write, with both shown. ``assert_done()`` checks that every pair was used and
that nothing is left unread or unmatched. Reads never block: an empty buffer returns b"", as a
real port does at its timeout.

Why not pymeasure's ``expected_protocol``: it scripts a pymeasure ``Instrument`` through a
``ProtocolAdapter`` (pymeasure's message-level adapter API), while these drivers are plain
classes over a pyserial port (``write``, ``read(size)``, ``in_waiting``,
``reset_input_buffer``). Its adapter also raises where a port returns b"" at its timeout
(the silent-meter tests need that b""), and it would add pymeasure with pyvisa and pint to
the dev dependencies for one test helper.
"""
from __future__ import annotations


class DialogueError(AssertionError):
    pass


class ExpectedDialogue:
    def __init__(self, pairs: list[tuple[bytes, bytes]]):
        self.pairs = list(pairs)
        self.index = 0
        self.sent = bytearray()        # sent bytes not yet matched
        self.rx = bytearray()          # answer bytes not yet read
        self.is_open = True
        self.timeout = 0.0
        self._advance()

    def _advance(self) -> None:
        # Queue the answers of pairs that need nothing sent (pushed records).
        while self.index < len(self.pairs) and self.pairs[self.index][0] == b"":
            self.rx += self.pairs[self.index][1]
            self.index += 1

    # -- the parts of pyserial's API the drivers use ---------------------------------------------
    def write(self, data: bytes) -> int:
        self.sent += data
        while self.sent:
            if self.index >= len(self.pairs):
                raise DialogueError(f"unexpected bytes sent after the dialogue ended: {bytes(self.sent)!r}")
            want = self.pairs[self.index][0]
            n = min(len(want), len(self.sent))
            if bytes(self.sent[:n]) != want[:n]:
                raise DialogueError(f"pair {self.index}: sent {bytes(self.sent)!r}, expected {want!r}")
            if len(self.sent) < len(want):
                break
            del self.sent[:len(want)]
            self.rx += self.pairs[self.index][1]
            self.index += 1
            self._advance()
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def close(self) -> None:
        self.is_open = False

    # -- the check ---------------------------------------------------------------------------------
    def assert_done(self) -> None:
        problems = []
        if self.index < len(self.pairs):
            problems.append(f"{len(self.pairs) - self.index} pair(s) never reached, next {self.pairs[self.index]!r}")
        if self.sent:
            problems.append(f"sent but unmatched: {bytes(self.sent)!r}")
        if self.rx:
            problems.append(f"answered but never read: {bytes(self.rx)!r}")
        if problems:
            raise DialogueError("; ".join(problems))
