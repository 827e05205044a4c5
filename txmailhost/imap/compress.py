"""COMPRESS=DEFLATE (RFC 4978): the whole rest of the session, both ways, as raw deflate.

After the tagged OK of ``COMPRESS DEFLATE`` (sent uncompressed) every octet the server writes
goes through one deflate stream (zlib without header, ``wbits=-15``, §3), flushed with
``Z_SYNC_FLUSH`` each time the session flushes its replies, so a client can decode a response as
soon as it arrives; every octet the client sends is inflated before the line reader sees it.
Compression sits above TLS (implicit or after STARTTLS): it is applied to the session's
plaintext, and STARTTLS is not allowed once logged in anyway.

Memory stays bounded against a decompression bomb (deflate expands up to ~1000:1): input is
inflated at most ``INFLATE_CHUNK`` octets at a time and only while the session reads, so what
the client sends meets the same line and literal limits as uncompressed input, and while a
command runs the compressed rest waits as it came (the transport is paused, as without
compression).
"""

from __future__ import annotations

import zlib
from typing import Any

from txmailhost.imap import replies
from txmailhost.imap.parser import Reader
from txmailhost.imap.replies import Done

INFLATE_CHUNK = 16 * 1024  # octets of inflated input handed to the line reader at once
DEFLATE_LEVEL = 6  # zlib's default; RFC 4978 §4 leaves the level to the implementation
WBITS = -15  # raw deflate (RFC 1951), no zlib header or checksum (RFC 4978 §3)


class CompressionError(Exception):
    """The client's compressed stream is not valid deflate: the session can't continue."""


class Deflate:
    """The two deflate streams of one session."""

    def __init__(self) -> None:
        self._deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, WBITS)
        self._inflater = zlib.decompressobj(WBITS)
        self._pending = b""  # compressed input not inflated yet
        self._full = False  # the last inflate filled its chunk: more output may be held inside
        self.octets_in = 0  # plain octets, before compression, for the session end log line
        self.octets_out = 0
        self.wire_in = 0
        self.wire_out = 0

    def compress(self, data: bytes) -> bytes:
        """``data`` deflated and sync-flushed: everything written so far can be decoded."""
        self.octets_out += len(data)
        out = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(out)
        return out

    def feed(self, data: bytes) -> None:
        """Compressed octets from the client, kept until ``inflate`` is asked for them."""
        self.wire_in += len(data)
        self._pending += data

    def has_input(self) -> bool:
        return bool(self._pending) or self._full

    def inflate(self) -> bytes:
        """At most ``INFLATE_CHUNK`` inflated octets of the pending input."""
        try:
            out = self._inflater.decompress(self._pending, INFLATE_CHUNK)
        except zlib.error as error:
            raise CompressionError(str(error)) from None
        self._pending = self._inflater.unconsumed_tail
        self._full = len(out) == INFLATE_CHUNK
        if self._inflater.eof:
            # A client ends its stream only when it closes; whatever follows isn't ours.
            raise CompressionError("the client ended its deflate stream")
        self.octets_in += len(out)
        return out


class CompressCommands:
    """Part of ``IMAPServer``: the COMPRESS command."""

    deflate: Deflate | None
    _after_reply: Any
    clearLineBuffer: Any
    dataReceived: Any

    async def _compress(self, reader: Reader, by_uid: bool) -> Done:
        """RFC 4978 §3. Bytes the client sent after the command line were compressed by it
        already (it may pipeline once it trusts the OK will come): they are inflated too."""
        reader.sp()
        mechanism = reader.atom().upper()
        reader.end()
        if self.deflate is not None:
            raise replies.IMAPError("DEFLATE active via COMPRESS", code="COMPRESSIONACTIVE")
        if mechanism != b"DEFLATE":
            raise replies.BadCommand("unknown compression mechanism; only DEFLATE")
        self._after_reply = self._start_compression
        return Done("DEFLATE active")

    def _start_compression(self) -> None:
        pipelined = self.clearLineBuffer()
        self.deflate = Deflate()
        if pipelined:
            self.dataReceived(pipelined)
