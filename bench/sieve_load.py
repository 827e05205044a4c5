"""Delivery with a 20-rule Sieve script active for every recipient, against none (issue 19).

Two numbers per case: the SMTP acceptance rate (messages per second until each ``250``, at 1
and 50 connections: Sieve runs after the ``250``, so this should not move) and the delivery
rate (messages per second until the last one is in its mailbox, which is where the scripts'
cost lands). Then the interpreter alone: the time one run of the script takes on one message,
p50 and p99, in this process, and the same for the script setting flags as it sorts.

The server is started with ``twistd`` as an administrator would, with users u0..u9 sharing
one password hash; the scripts are written through ``ScriptStore`` as ManageSieve would.

    python -m bench.sieve_load [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rcpt_latency import DOMAIN, populate
from bench.server import free_port, kill_tree, wait_for_port
from bench.smtp_load import SmtpLoad
from bench.smtp_load import run as smtp_run
from bench.stats import percentile

_TWISTD = "from twisted.scripts.twistd import run; run()"
USERS = 10

# Twenty rules of the kinds users write: lists by header, senders by address, subjects, sizes.
RULES = "\n".join(
    [
        'require ["fileinto", "envelope", "variables", "relational", "body", "copy"];',
        *(
            f'if header :contains "List-Id" "list{i}.example" {{ fileinto "List{i}"; stop; }}'
            for i in range(8)
        ),
        *(
            f'if address :domain :is "from" "sender{i}.example" {{ fileinto "Sender{i}"; }}'
            for i in range(6)
        ),
        'if header :matches "subject" "[*] *" { set "tag" "${1}"; }',
        'if header :contains "subject" ["viagra", "lottery", "winner"] { discard; stop; }',
        'if envelope :localpart :is "from" "mailer-daemon" { fileinto "Bounces"; }',
        'if size :over 1M { fileinto "Large"; }',
        'if exists "X-Spam-Flag" { fileinto "Junk"; stop; }',
        'if not exists "Message-ID" { fileinto "Suspicious"; }',
    ]
)


def _delivered(data: Path) -> int:
    total = 0
    for i in range(USERS):
        new = data / "mail" / DOMAIN / f"u{i}" / "new"
        if new.is_dir():
            total += len(os.listdir(new))
    return total


def case(messages: int, connections: int, script: bool) -> dict[str, float]:
    from txmailhost.sieve.scripts import ScriptStore

    with tempfile.TemporaryDirectory(prefix="txm-sieve-") as tmp:
        data = Path(tmp) / "data"
        populate(data, USERS, 0)
        if script:
            store = ScriptStore(str(data / "sieve"))
            for i in range(USERS):
                store.put(f"u{i}@{DOMAIN}", "rules", RULES)
                store.set_active(f"u{i}@{DOMAIN}", "rules")
        port = free_port()
        (data / "txmailhost.toml").write_text(
            f'[listen]\nsmtp = "tcp:{port}:interface=127.0.0.1"\nsubmission = ""\n'
            'submissions = ""\nimap = ""\nimaps = ""\npop3 = ""\npop3s = ""\nmanagesieve = ""\n'
        )
        server = subprocess.Popen(
            [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", f"--logfile={tmp}/log",
             "txmailhost", "--data", str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", port, 30, lambda: server.poll() is None)
            started = time.perf_counter()
            load = SmtpLoad(
                "127.0.0.1", port, messages=messages, connections=connections,
                per_connection=max(1, messages // connections), recipient=f"u1@{DOMAIN}",
            )  # fmt: skip
            result = asyncio.run(smtp_run(load))
            while _delivered(data) < result.accepted and time.perf_counter() - started < 300:
                time.sleep(0.01)
            delivered_in = time.perf_counter() - started
        finally:
            kill_tree(server.pid)
    return {"smtp": result.rate, "delivered": result.accepted / delivered_in}


# The same rules setting flags as they sort (imap4flags): what the flag lists cost per run.
FLAG_RULES = (
    RULES.replace('"copy"];', '"copy", "imap4flags"];\naddflag "$Sorted";', 1)
    .replace('set "tag" "${1}";', 'set "tag" "${1}"; addflag "tags" "${tag} \\\\Flagged";')
    .replace('fileinto "Large";', 'fileinto :flags "${tags} \\\\Seen" "Large";')
    + '\nif hasflag :contains "tags" "urgent" { keep :flags "\\\\Flagged"; }'
)


def interpreter_times(runs: int, rules: str = RULES) -> tuple[float, float]:
    from bench import messages as bench_messages
    from txmailhost.sieve.interpreter import Interpreter
    from txmailhost.sieve.language import compile_script
    from txmailhost.sieve.message import MessageView

    script = compile_script(rules)
    data = bench_messages.message(1, 4096, "load@client.test", f"u1@{DOMAIN}")
    data = b"Return-Path: <load@client.test>\r\n" + data
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        view = MessageView.from_bytes(data, f"u1@{DOMAIN}")
        Interpreter(script, view).run()
        timings.append((time.perf_counter() - started) * 1e6)
    return percentile(timings, 50), percentile(timings, 99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sieve_load", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    print(f"{'connections':<12}{'script':<8}{'SMTP msgs/s':>12}{'delivered msgs/s':>18}")
    for connections in (1, 50):
        rates = {}
        for script in (False, True):
            rates[script] = case(args.messages, connections, script)
            label = "20 rules" if script else "none"
            r = rates[script]
            print(f"{connections:<12}{label:<8}{r['smtp']:>12.0f}{r['delivered']:>18.0f}")
        for key in ("smtp", "delivered"):
            change = (rates[True][key] / rates[False][key] - 1) * 100
            print(f"  {key} with script vs none: {change:+.1f}%")
    for label, rules in (("20-rule script", RULES), ("same with imap4flags", FLAG_RULES)):
        p50, p99 = interpreter_times(5000, rules)
        print(f"one run of the {label} on a 4 KiB message: p50 {p50:.0f} us, p99 {p99:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
