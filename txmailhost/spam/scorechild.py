"""``python -m txmailhost.spam.scorechild``: the child process that scores (``offload.py``).

Started by the server's ``offload.ScoringProcess`` with one end of a socket pair (``--fd``)
and the token store's settings; it answers one request at a time until the server closes
the socket.
"""

from __future__ import annotations

import argparse
import gc
import json
import select
import signal
import socket
import sys
from typing import Any

from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.frames import IDLE, Frames, rule_as_list, rule_from_list, send
from txmailhost.spam.sample import sample_of_bytes
from txmailhost.spam.scorer import Scorer
from txmailhost.spam.sqlitedb import MMAP_SIZE

GC_THRESHOLD = 70_000  # allocations between the collector's runs (Python's default: 700)
MAX_HELD_ANSWERS = 4  # answers held back while requests are queued (each waits < 1 ms more)


def serve(sock: socket.socket, scorer: Scorer, max_idle: float | None = None) -> None:
    """A request in, the scores out, until the server closes the socket or nothing has
    come for ``max_idle`` seconds (then the last frame says so: ``offload.IDLE``)."""
    send(sock, b"ready")
    frames = Frames(sock)
    answers: list[bytes] = []  # not sent yet: more requests had already come
    while True:
        if max_idle and not frames.buffered() and not select.select([sock], [], [], max_idle)[0]:
            send(sock, IDLE)
            return
        try:
            header_octets = frames.read()
            head = frames.read()
            body = frames.read()
        except EOFError:
            return
        try:
            header = json.loads(header_octets)
            sample = sample_of_bytes(head, body, bool(header["truncated"]))
            scores = scorer.score_each(
                sample,
                header["owners"],
                header["sender"],
                [rule_from_list(r) for r in header["connection"]],
            )
            answer: dict[str, Any] = {
                "scores": [
                    [s.total, [rule_as_list(r) for r in s.hits], s.bayes, s.threshold]
                    for s in scores
                ]
            }
        except Exception as e:  # this message can't be scored here: the server scores it
            answer = {"error": f"{type(e).__name__}: {e}"}
        answers.append(json.dumps(answer).encode())
        # Requests already read wait for the ones before them: their answers go out together,
        # one system call and one wake-up of the server's reader for several messages.
        if not frames.buffered() or len(answers) >= MAX_HELD_ANSWERS:
            send(sock, *answers)
            answers.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m txmailhost.spam.scorechild")
    parser.add_argument("--fd", type=int, required=True)
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
    sock = socket.socket(fileno=args.fd)
    store = TokenStore(
        args.store, args.min_messages, args.max_tokens, args.max_age_days, mmap_size=MMAP_SIZE
    )
    # Scoring a message makes thousands of short-lived objects and almost no cycles: the
    # collector ran every 700 allocations, each time also looking over the modules imported
    # (6-12% of the time scoring took, bench message and corpus). The objects there now stay out of
    # its way (``freeze``) and it runs a hundred times less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    try:
        serve(sock, Scorer(store, args.authserv_id), args.max_idle)
    finally:
        store.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
