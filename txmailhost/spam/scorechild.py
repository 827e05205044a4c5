"""``python -m txmailhost.spam.scorechild``: the child process that scores (``offload.py``).

Started by the server's ``offload.ScoringProcess`` with one end of its channel (a socket
pair, ``--fd``; more than one are served alike) and the token store's settings; it answers
the requests in the order they come, one at a time, until the server closes the channel.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import selectors
import signal
import socket
import sys
from typing import Any

from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.cluecache import DEFAULT_MOST
from txmailhost.spam.frames import IDLE, Frames, rule_as_list, rule_from_list, send
from txmailhost.spam.links import link_domains
from txmailhost.spam.sample import sample_of_bytes
from txmailhost.spam.scorer import Scorer
from txmailhost.spam.sqlitedb import MMAP_SIZE

GC_THRESHOLD = 70_000  # allocations between the collector's runs (Python's default: 700)


def serve(socks: list[socket.socket], scorer: Scorer, max_idle: float | None = None) -> None:
    """A request in on any channel, its scores out on the same one, until the server closes
    them or nothing has come for ``max_idle`` seconds (then each channel's last frame says
    so: ``offload.IDLE``). The server sends requests without waiting for the answers, so a
    channel is answered until nothing it sent is left in its buffer (the socket may then be
    empty, and wouldn't be reported ready again)."""
    send(socks[0], b"ready")
    channels = {sock.fileno(): Frames(sock) for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while True:
            ready = selector.select(max_idle or None)
            if not ready:
                for sock in socks:
                    with contextlib.suppress(OSError):
                        send(sock, IDLE)
                return
            for key, _events in ready:
                channel = channels[key.fd]
                while True:
                    try:
                        request = (channel.read(), channel.read(), channel.read())
                    except (EOFError, OSError):
                        return  # the server closed the channels: it ended, or ended us
                    send(channel.sock, _answer(scorer, *request))
                    if not channel.buffered():
                        break


def _answer(scorer: Scorer, header_octets: bytes, head: bytes, body: bytes) -> bytes:
    try:
        header = json.loads(header_octets)
        sample = sample_of_bytes(head, body, bool(header["truncated"]), digest=False)
        scores = scorer.score_each(
            sample,
            header["owners"],
            header["sender"],
            [rule_from_list(r) for r in header["connection"]],
            _arrival(header.get("arrival")),
        )
        answer: dict[str, Any] = {
            "scores": [
                [s.total, [rule_as_list(r) for r in s.hits], s.bayes, s.threshold] for s in scores
            ]
        }
        if header.get("domains"):  # URI block lists: the server looks them up
            answer["domains"] = link_domains(sample.urls)
    except Exception as e:  # this message can't be scored here: the server scores it
        answer = {"error": f"{type(e).__name__}: {e}"}
    return json.dumps(answer).encode()


def _arrival(value: Any) -> float | None:
    """The request's ``arrival`` (Unix time), None when absent or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m txmailhost.spam.scorechild")
    parser.add_argument("--fd", type=int, action="append", required=True, help="a channel")
    parser.add_argument("--store", required=True)
    parser.add_argument("--min-messages", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=2_000_000)
    parser.add_argument("--max-age-days", type=float, default=180.0)
    parser.add_argument("--authserv-id", default="")
    parser.add_argument("--max-idle", type=float, default=0.0, help="seconds; 0: no end")
    args = parser.parse_args(argv)
    # Ctrl-C at a foreground server reaches its whole process group: the child ends when the
    # server does (the end of its socket), not with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    socks = [socket.socket(fileno=fd) for fd in args.fd]
    store = TokenStore(
        args.store,
        args.min_messages,
        args.max_tokens,
        args.max_age_days,
        mmap_size=MMAP_SIZE,
        cache_tokens=DEFAULT_MOST,
    )
    # Scoring a message makes thousands of short-lived objects and almost no cycles: the
    # collector ran every 700 allocations, each time also looking over the modules imported
    # (6-12% of the time scoring took, bench message and corpus). The objects there now stay
    # out of its way (``freeze``) and it runs a hundred times less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    try:
        serve(socks, Scorer(store, args.authserv_id), args.max_idle)
    finally:
        store.close()
        for sock in socks:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
