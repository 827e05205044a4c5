"""IMAPS handshake load: C clients opening implicit-TLS IMAP sessions back to back for T seconds.

One handshake, as counted here, is everything a mail client pays to learn the server is there
before it logs in: TCP connect, a full TLS handshake (no session resumption: the client keeps no
session), the server's ``* OK`` greeting read through TLS, then ``a LOGOUT`` sent and its
``* BYE`` and ``a OK`` read, and the socket closed. With ``logout=False`` the client closes
right after the greeting instead (a client giving up; also a way round a server that mishandles
LOGOUT). No login: password hashing is measured with SMTP AUTH (``tls_suite``), not here. The
certificate is not verified (self-signed, loopback), but TLS 1.3 still has the client check the
server's signature over the handshake.

Clients are threads with blocking sockets, not asyncio tasks: the handshake then runs in
OpenSSL with the GIL released, and the client's own cost per handshake (about 1 ms of CPU here,
sharing the cores with the server on a one-box benchmark) is as small as Python allows, and the
same for every server measured. The client context loads no CA store: with verification off it
is unused, yet OpenSSL 3.0 would still pay for it on every connection. Each client repeats until
the deadline; the rate is handshakes completed over the time from the start to the last one's
end.

Run alone: ``python -m bench.tls_load --port 2993 --clients 50 --seconds 5``.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from bench.stats import percentile


@dataclass(frozen=True)
class HandshakeLoad:
    host: str
    port: int
    clients: int = 50
    seconds: float = 5.0
    logout: bool = True
    timeout: float = 30.0


@dataclass
class HandshakeResult:
    """What a load achieved; latencies in seconds, one per completed handshake."""

    completed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latency: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    negotiated: str = ""  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", from the last handshake

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        line = (
            f"{self.completed} handshakes, {self.failed} failed in {self.elapsed:.2f}s:"
            f" {self.rate:.0f}/s; p50 {percentile(self.latency, 50) * 1e3:.2f} ms"
            f" p99 {percentile(self.latency, 99) * 1e3:.2f} ms ({self.negotiated})"
        )
        return line + "".join(f"\n  error: {e}" for e in self.error_samples)


def client_context() -> ssl.SSLContext:
    """What a mail client offers (Python's defaults: TLS 1.2+, X25519 first), minus verifying."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def handshake(load: HandshakeLoad, context: ssl.SSLContext) -> str:
    """One connect, TLS handshake, greeting, LOGOUT, close; returns the protocol and cipher."""
    with (
        socket.create_connection((load.host, load.port), timeout=load.timeout) as raw,
        context.wrap_socket(raw) as tls,
        tls.makefile("rb") as lines,
    ):
        greeting = lines.readline()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"greeting: {greeting[:80]!r}")
        if not load.logout:
            return f"{tls.version()} {(tls.cipher() or ('?',))[0]}"
        tls.sendall(b"a LOGOUT\r\n")
        while not (line := lines.readline()).startswith(b"a "):  # past the untagged * BYE
            if not line:
                raise ConnectionError("closed by the server before its LOGOUT reply")
        if not line.startswith(b"a OK"):
            raise ConnectionError(f"LOGOUT: {line[:80]!r}")
        return f"{tls.version()} {(tls.cipher() or ('?',))[0]}"


def run(load: HandshakeLoad) -> HandshakeResult:
    """Run the load; every client thread stops starting handshakes at the deadline."""
    result = HandshakeResult()
    lock = threading.Lock()
    last_done = [0.0]
    started = time.perf_counter()
    deadline = started + load.seconds

    def client() -> None:
        context = client_context()
        while time.perf_counter() < deadline:
            begun = time.perf_counter()
            try:
                negotiated = handshake(load, context)
            except (OSError, ConnectionError) as e:  # ssl.SSLError is an OSError
                with lock:
                    result.failed += 1
                    if len(result.error_samples) < 10:
                        result.error_samples.append(repr(e))
                time.sleep(0.01)
                continue
            done = time.perf_counter()
            with lock:
                result.completed += 1
                result.latency.append(done - begun)
                result.negotiated = negotiated
                last_done[0] = max(last_done[0], done)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(load.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed = (last_done[0] or time.perf_counter()) - started
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line for running one handshake load by hand against any IMAPS server."""
    parser = argparse.ArgumentParser(prog="python -m bench.tls_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2993)
    parser.add_argument("--clients", "-c", type=int, default=50)
    parser.add_argument("--seconds", "-t", type=float, default=5.0)
    parser.add_argument("--no-logout", action="store_true", help="close after the greeting")
    args = parser.parse_args(argv)
    load = HandshakeLoad(args.host, args.port, args.clients, args.seconds, not args.no_logout)
    result = run(load)
    print(result.summary())
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
