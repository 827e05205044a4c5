"""The results as a terminal table and as docs/benchmarks.rst, with the machine they came from.

A number without its machine is meaningless, so the report always carries cores, CPU model,
kernel, Python, Twisted, Postfix and Dovecot versions and the exact command line. The ratio
column is txmailhost / anchor; whether that is good depends on the figure (msgs/s: higher is
better; ms and MiB: lower), so each row also says which way is better.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.results import MACHINE, Results
from bench.workload import MiB, Workload

TARGET = "txmailhost"


def machine() -> dict[str, str]:
    """What the numbers depend on, read from the running system."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import twisted

        twisted_version = twisted.__version__
    except ImportError:
        twisted_version = "not installed"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "twisted": twisted_version,
        "revision": _git_revision(),
    }


def _git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "no commit yet"


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "—"
    if unit == "count":
        return f"{value:.0f}"
    if unit in ("/s", "MB/s") and value >= 100:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _ratio(results: Results, key: str) -> str:
    ratio = results.ratio(key, TARGET)
    if math.isnan(ratio):
        return "—"
    figure = results.figures[key]
    if 0.95 <= ratio <= 1.05:
        verdict = "on par"
    elif (ratio > 1) == figure.higher_is_better:
        verdict = "better"
    else:
        verdict = "worse"
    return f"{ratio:.2f} ({verdict})"


def rows(results: Results) -> list[list[str]]:
    """Figure | txmailhost | anchor | ratio, one row per compared figure, medians."""
    table = []
    for key, figure in results.figures.items():
        if figure.anchor == MACHINE:
            continue
        unit = f" ({figure.unit})" if figure.unit not in ("/s",) else ""
        if figure.anchor in results.skipped:
            anchor = f"skipped ({figure.anchor})"
        else:
            anchor = f"{_number(results.median(figure.anchor, key), figure.unit)} ({figure.anchor})"
        ours = _number(results.median(TARGET, key), figure.unit)
        if TARGET in results.skipped:
            ours = "not run"
        better = "higher" if figure.higher_is_better else "lower"
        table.append(
            [f"{figure.label}{unit}, {better} is better", ours, anchor, _ratio(results, key)]
        )
    return table


def machine_rows(results: Results) -> list[list[str]]:
    return [
        [figure.label, _number(results.median(MACHINE, key), figure.unit)]
        for key, figure in results.figures.items()
        if figure.anchor == MACHINE
    ]


def targets(results: Results) -> list[str]:
    """Issue 7's targets, each with whether this run met it (or why it can't tell)."""

    def check(text: str, key: str, threshold: float) -> str:
        ratio = results.ratio(key, TARGET) if key in results.figures else math.nan
        if math.isnan(ratio):
            return f"{text}: not measured in this run"
        return f"{text}: {'met' if ratio >= threshold else 'NOT met'} (ratio {ratio:.2f})"

    smtp_keys = [k for k in results.figures if k.startswith("smtp.accepted@")]
    pop3_keys = [k for k in results.figures if k.startswith("pop3.retr@1")]
    return [
        check(
            "SMTP accepted msgs/s (fsync'd) at the highest connection count >= Postfix",
            smtp_keys[-1] if smtp_keys else "",
            1.0,
        ),
        check(
            "POP3 RETR-all time <= 2x Dovecot (RETR/s ratio >= 0.5)",
            pop3_keys[0] if pop3_keys else "",
            0.5,
        ),
        _imap_select_target(results),
        _imap_idle_target(results),
    ]


def _imap_select_target(results: Results) -> str:
    """SELECT + UID FETCH 1:* on the largest mailbox measured, txmailhost's sum over Dovecot's.

    The target is about 100,000 messages; a run on fewer says so rather than pass for it.
    """
    text = "IMAP SELECT and UID FETCH 1:* (FLAGS) on 100k messages <= 2x Dovecot"
    sizes = [int(k.split("@")[1]) for k in results.figures if k.startswith("imap.select@")]
    if not sizes:
        return f"{text}: not measured in this run"
    count = max(sizes)
    keys = (f"imap.select@{count}", f"imap.fetch_flags@{count}")
    ours = sum(results.median(TARGET, k) for k in keys)
    theirs = sum(results.median("Dovecot", k) for k in keys)
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return f"{text}: not measured in this run ({count:,} messages, no pair of numbers)"
    ratio = ours / theirs
    where = "" if count >= 100_000 else f" (measured on {count:,} messages, not 100k)"
    verdict = "met" if ratio <= 2.0 else "NOT met"
    return f"{text}: {verdict}{where}: {ours:.1f} ms vs {theirs:.1f} ms (ratio {ratio:.2f})"


def _imap_idle_target(results: Results) -> str:
    """An absolute target (KiB per idle session), not a ratio; Dovecot's number for scale."""
    text = "Memory per idle IMAP connection < 50 KiB"
    keys = [k for k in results.figures if k.startswith("imap.idle_kib@")]
    ours = results.median(TARGET, keys[-1]) if keys else math.nan
    if math.isnan(ours):
        return f"{text}: not measured in this run"
    idle = keys[-1].split("@")[1]
    theirs = results.median("Dovecot", keys[-1])
    scale = "" if math.isnan(theirs) else f"; Dovecot {theirs:.0f} KiB"
    verdict = "met" if ours < 50 else "NOT met"
    return f"{text}: {verdict}: {ours:.1f} KiB per session with {idle} idle{scale}"


def _text_table(header: Sequence[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(header), *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    out = [line(header), line(["-" * w for w in widths])] + [line(row) for row in body]
    return "\n".join(text.rstrip() for text in out)


def text(results: Results) -> str:
    """The report for the terminal."""
    parts = []
    if machine_rows(results):
        parts.append(_text_table(["Disk (the physical limit)", "value"], machine_rows(results)))
    if rows(results):
        parts.append(_text_table(["Figure (median)", TARGET, "anchor", "ratio"], rows(results)))
    for name, reason in results.skipped.items():
        parts.append(f"skipped {name}: {reason}")
    parts += [f"problem: {p}" for p in results.problems]
    parts += [f"note: {n}" for n in results.notes]
    return "\n\n".join(parts)


def _rst_table(header: Sequence[str], body: list[list[str]], widths: str) -> str:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [list(header), *body]:
        out.append(f"   * - {row[0]}")
        out += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(out)


def rst(results: Results, workload: Workload, argv: Sequence[str]) -> str:
    """docs/benchmarks.rst: how, where and what was measured."""
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", "-m", "bench", *argv])
    conns = " and ".join(str(c) for c in workload.connections)
    versions = ", ".join(f"{name} {version}" for name, version in results.versions.items())
    out = [
        "Benchmarks",
        "==========",
        "",
        ".. Written by ``python -m bench`` (bench/report.py); rerun it rather than editing.",
        "",
        "txmailhost measured side by side with Debian's Postfix (SMTP) and Dovecot (POP3 and",
        "IMAP), each started by the harness from a private config on loopback, on the same machine",
        "and the same workload, alternating servers run by run so that a noisy spell hits both",
        "columns. Every figure is the median of the repeated runs. The ratio is txmailhost /",
        "anchor; each row says whether higher or lower is better. The load generators (Python,",
        "asyncio) run on the same cores as the servers: the numbers are for the pair, as on any",
        "one-box benchmark, and are best read as ratios.",
        "",
        "Run",
        "---",
        "",
        f":Date: {now}",
        f":Command: ``{command}`` (from the project root)",
        f":Machine: {info['cores']} cores, {info['cpu']}, {info['kernel']}",
        f":Software: Python {info['python']}, Twisted {info['twisted']}, {versions}",
        f":Revision: {info['revision']}",
        f":Workload: SMTP {workload.messages} messages of {workload.size} bytes at {conns}"
        f" connections, {workload.per_connection} per connection, commands in lock-step"
        f"{' (PIPELINING)' if workload.pipelining else ''}"
        f"{', STARTTLS' if workload.starttls else ''}{', AUTH' if workload.auth else ''};"
        f" POP3 UIDL + RETR-all of {workload.pop3_messages} messages on one session, and"
        f" {workload.pop3_sessions} sessions at once over {workload.pop3_messages} messages in"
        f" all; IMAP on an INBOX of {workload.imap_messages} messages, APPEND of"
        f" {workload.imap_appends}, {workload.imap_sessions} concurrent sessions,"
        f" {workload.imap_idle} idle sessions for memory;"
        f" one {workload.large_size / MiB:g} MiB message for memory; {workload.repeat}"
        " runs each.",
        "",
    ]
    if machine_rows(results):
        out += [
            "The disk",
            "--------",
            "",
            "fsync'd 4 KiB file creates per second (file fsync, then directory fsync) in the",
            "directory holding the servers' data: no server that fsyncs each message before",
            "its ``250`` can accept more msgs/s on one connection.",
            "",
            _rst_table(["Figure", "Value"], machine_rows(results), "70 30"),
            "",
        ]
    out += ["Results", "-------", ""]
    if rows(results):
        out += [_rst_table(["Figure", TARGET, "Anchor", "Ratio"], rows(results), "52 16 18 14"), ""]
    else:
        out += ["Nothing was measured in this run.", ""]
    out += ["Targets (issue 7)", "-----------------", ""]
    out += [f"- {line}" for line in targets(results)] + [""]
    notes = [f"{name} not measured: {reason}" for name, reason in results.skipped.items()]
    notes += results.notes + results.problems
    if notes:
        out += ["Notes", "-----", ""] + [f"- {n}" for n in notes] + [""]
    out += [
        "How to run",
        "----------",
        "",
        "As root (Postfix and Dovecot masters must start as root; nothing of the system's mail",
        "services is used or touched), from the project root, with txmailhost installed in the",
        "interpreter's environment::",
        "",
        "    python -m bench                  # full run, writes this file",
        "    python -m bench --only smtp      # one suite (prints; --output to write)",
        "    python -m bench --smoke          # seconds; what CI runs to keep the harness alive",
        "",
        "Anchors that are not installed (``apt-get install postfix dovecot-imapd",
        "dovecot-pop3d``) are skipped and the table says so. ``python -m bench --help`` lists",
        "the workload options.",
        "",
    ]
    return "\n".join(out)


def write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    print(f"wrote {path}", file=sys.stderr)
