"""Reading the DATA section: dot-unstuffing, the end marker, and bare CR/LF detection.

RFC 5321 4.1.1.4 and 4.5.2: the message ends at ``<CRLF>.<CRLF>`` and nothing else; a line that
starts with '.' had one dot added by the client, which we remove. RFC 5321 2.3.8 forbids a bare
CR or LF in the text; the 2023 SMTP-smuggling attacks (CVE-2023-51764/5/6) exploit servers that
take ``<LF>.<LF>``, ``<LF>.<CR><LF>`` or ``<CR><LF>.<LF>`` as the end. Here only the exact
sequence ends the message, and any bare CR or LF is recorded so the server can refuse the whole
message (nothing of it is stored or relayed, so a downstream server can't be fooled either).

The reader streams: it never holds more than a few bytes of carry between calls, whatever the
line length, so a 50 MiB message costs no more memory than a 4 KiB one. It doesn't split lines
on length (Twisted's server turned the rest of a long line into commands: audit §1, defect 2).
"""

from __future__ import annotations

from collections.abc import Callable


class DataReader:
    """Feed it the bytes after ``354``; it calls ``write`` with the unstuffed message text.

    ``feed`` returns ``None`` while the message continues, or the bytes that followed the end
    marker (pipelined commands) once it has been seen. After ``max_size`` octets the text is no
    longer written (``too_big`` is set) but the reader keeps looking for the end marker, so the
    session stays in step with the client.
    """

    def __init__(self, write: Callable[[bytes], None], max_size: int) -> None:
        self._write = write
        self._max_size = max_size
        self._carry = b""
        self._at_line_start = True
        self.size = 0
        self.too_big = False
        self.bare_newline = False

    def _emit(self, chunk: bytes) -> None:
        if not chunk:
            return
        crlf = chunk.count(b"\r\n")
        if chunk.count(b"\n") != crlf or chunk.count(b"\r") != crlf:
            self.bare_newline = True
        self.size += len(chunk)
        if self.size > self._max_size:
            self.too_big = True
        if not self.too_big and not self.bare_newline:
            self._write(chunk)

    def feed(self, data: bytes) -> bytes | None:
        """Only lines that begin with '.' need a look (the end marker or a stuffed dot), so the
        scan jumps from one ``<CRLF>.`` to the next with ``bytes.find``: the other lines pass
        through as one slice (a 4 KiB message is usually one piece, not fifty)."""
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos, end = 0, len(buf)
        pieces: list[bytes] = []
        while pos < end:
            if self._at_line_start:
                if buf[pos] == 0x2E:  # "."
                    if end - pos < 3:
                        self._carry = buf[pos:]  # ".", ".\r" or ".x": can't tell yet
                        break
                    if buf[pos : pos + 3] == b".\r\n":
                        self._emit(b"".join(pieces))
                        return buf[pos + 3 :]
                    pos += 1  # a stuffed dot: drop it (4.5.2)
                self._at_line_start = False
            dot_line = buf.find(b"\r\n.", pos)
            if dot_line >= 0:
                pieces.append(buf[pos : dot_line + 2])
                pos = dot_line + 2
                self._at_line_start = True
                continue
            # No line in the rest starts with a dot. Pass it all on, except a final CR that
            # may begin a CRLF; a final CRLF means the next octet starts a line.
            if buf[end - 1] == 0x0D:
                stop = end - 1
            else:
                stop = end
                self._at_line_start = buf.endswith(b"\r\n")
            if stop > pos:
                pieces.append(buf[pos:stop])
            self._carry = buf[stop:]
            break
        self._emit(b"".join(pieces))
        return None


class LineEnds:
    """Watches BDAT chunks (RFC 3030) for a bare CR or LF, across chunk boundaries.

    BDAT content is counted, not terminated, so nothing in it can end the message early; but
    a message taken in with bare line ends could still be relayed onward with DATA, where a
    downstream server might read ``<LF>.<LF>`` as the end (SMTP smuggling). So chunks of a
    7BIT/8BITMIME message are held to the same rule as DATA (RFC 5321 2.3.8): any bare CR or
    LF refuses the message. Only BODY=BINARYMIME content may hold any octet, and such a message
    leaves only by BDAT (``relay/session.py``).
    """

    def __init__(self) -> None:
        self._pending_cr = False  # the last chunk ended in CR: the next must begin with LF
        self.bare = False

    def feed(self, data: bytes) -> None:
        if self.bare or not data:
            return
        if self._pending_cr:
            data = b"\r" + data
        self._pending_cr = data.endswith(b"\r")
        if self._pending_cr:
            data = data[:-1]
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            self.bare = True

    def end(self) -> None:
        """The message is complete: a CR left waiting for its LF was a bare CR."""
        if self._pending_cr:
            self.bare = True
