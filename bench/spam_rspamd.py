"""rspamd judged on ``bench.spam_corpus``'s splits, beside txmailhost and SpamAssassin.

``python -m bench.spam_corpus --e2e --rspamd`` (``bench.spam_e2e``). rspamd is the one
``bench.spam_anchor`` starts (Debian's rspamd, stock config copied and taken offline: DNS
to a loopback server answering NXDOMAIN, fuzzy_check off, downloaded maps empty), with
Bayes in a fresh Redis of its own for each split and each way of training it:

- "stock learn": ``rspamc learn_spam`` / ``learn_ham`` of the split's training messages, as
  an operator feeds it; the stock ``learn_condition`` refuses a message the classifier
  already puts in that class with 95% or more, so it learns fewer than it was given;
- "learn all": the same requests with ``Learn-Type: bulk``, which that condition lets
  through, so it learns every message as ``sa-learn`` does (but any learned before, as the
  corpus repeats a few, and one of fewer than the classifier's ``min_tokens``, 11).

Each test message is then scanned by the normal worker's ``/checkv2`` (what an MTA's milter
proxy asks) with the envelope of the e2e's SMTP delivery to txmailhost where it means the
same: ``From`` the message's ``Return-Path:`` (else ``From:``), ``Helo`` the client's name,
``IP`` 127.0.0.1 by default. A public address would be truer to how the mail came, but every
DNS answer here is NXDOMAIN, so rspamd finds no HELO host and no sender domain for ham too
(``HFILTER_HELO_NORES_A_OR_MX``, ``HFILTER_FROMHOST_NORES_A_OR_MX``), which no real
deployment sees, and its greylist module answers ``soft reject`` to every first delivery
(a probe of 20 easy ham from 192.0.2.10: all 20); from a loopback address rspamd takes the
message as handed over by a local relay and skips those, as txmailhost's delivery from
127.0.0.1 skips its mail authentication. ``--rspamd-ip`` gives another. No ``Rcpt``: the
account the e2e delivers to is in no corpus message's ``To:``/``Cc:``, so rspamd would add
``FORGED_RECIPIENTS`` to every message (20 of 20 easy ham and of spam in a probe), 2.0
points where it is neither list mail nor forwarded, and the envelope recipient the mail really had is not known; SpamAssassin gets no envelope
either.

A message is "in Junk" at the stock ``add header`` score (6) or more and "refused" at
``reject`` (15), both read from the running rspamd (its controller's ``/actions``), not
from the action it answers, which the greylist's ``soft reject`` would stand for with
another ``--rspamd-ip`` (a retry clears it). Every message's score is kept, so figures at
other thresholds can be read off (``curve``).
"""

from __future__ import annotations

import collections
import json
import shutil
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import spam_anchor
from bench.spam_e2e import envelope_sender

HELO = "client.bench.invalid"  # what bench.spam_e2e's smtplib says in EHLO
MODES = {"stock learn": False, "learn all": True}  # row name -> Learn-Type: bulk


def available() -> str | None:
    """Why rspamd can't run beside it here, or None."""
    if not spam_anchor.STOCK_CONFIG.is_dir():
        return f"no stock rspamd config in {spam_anchor.STOCK_CONFIG}"
    for program in ("rspamd", "rspamc", "redis-server"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: rspamd, redis-server)"
    return None


def thresholds(rspamd: spam_anchor.Rspamd) -> dict[str, float]:
    """The running rspamd's action thresholds (``add header``, ``reject``, …)."""
    with urllib.request.urlopen(f"http://{rspamd.controller}/actions", timeout=30) as reply:
        actions = json.load(reply)
    return {a["action"]: float(a["value"]) for a in actions if a.get("value") is not None}


def check(rspamd: spam_anchor.Rspamd, message: bytes, ip: str) -> dict[str, object]:
    """rspamd's ``/checkv2`` reply for ``message`` delivered as the e2e delivers it."""
    headers = {"IP": ip, "Helo": HELO}
    if sender := envelope_sender(message):
        headers["From"] = sender
    request = urllib.request.Request(
        f"http://{rspamd.normal}/checkv2", data=message, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        answer = json.load(reply)
    if "score" not in answer:
        raise RuntimeError(f"rspamd gave no score: {str(answer)[:300]}")
    return answer


def run_rspamd(
    workdir: Path,
    spam: list[bytes],
    ham: list[bytes],
    test: dict[str, list[bytes]],
    bulk: bool,
    ip: str = "127.0.0.1",
) -> dict[str, object]:
    """Train a fresh rspamd on ``spam`` and ``ham`` and scan every ``test`` message: the
    verdicts (``spam_e2e.rates``' form), the scores, both again without ``DATE_IN_PAST``
    (``undated``), how many it learned and why not the rest, and the actions it answered."""
    workdir.mkdir(parents=True)
    with spam_anchor.running_rspamd(workdir) as rspamd:
        started = time.monotonic()
        taken, refused = spam_anchor.train(rspamd, workdir, {"spam": spam, "ham": ham}, bulk)
        trained = time.monotonic() - started
        limits = thresholds(rspamd)
        junk, reject = limits["add header"], limits["reject"]
        started = time.monotonic()
        scores: dict[str, list[float]] = {}
        undated: dict[str, list[float]] = {}
        actions: collections.Counter[str] = collections.Counter()
        bayes = 0
        with ThreadPoolExecutor(4) as pool:
            for group, messages in test.items():
                answers = list(pool.map(lambda m: check(rspamd, m, ip), messages))
                scores[group] = [float(a["score"]) for a in answers]  # type: ignore[arg-type]
                undated[group] = [
                    score - _dated(a) for score, a in zip(scores[group], answers, strict=True)
                ]
                actions.update(str(a.get("action")) for a in answers)
                bayes += sum(
                    any(name.startswith("BAYES_") for name in a.get("symbols", {}))  # type: ignore[union-attr]
                    for a in answers
                )
    return {
        "verdicts": verdicts_at(scores, junk, reject),
        "scores": scores,
        "undated": {"verdicts": verdicts_at(undated, junk, reject), "scores": undated},
        "learned": taken,
        "not_learned": refused,
        "actions": actions,
        "bayes": bayes,
        "thresholds": (junk, reject),
        "train_s": trained,
        "deliver_s": time.monotonic() - started,
    }


def _dated(answer: dict[str, object]) -> float:
    """What ``DATE_IN_PAST`` added to the message's score. rspamd compares the Date with
    the time of the scan, so every corpus message (2002-2003) gets it, ham and spam alike:
    mail scanned as it arrives would not, so the figures are given without it too."""
    symbols: dict[str, dict[str, float]] = answer.get("symbols", {})  # type: ignore[assignment]
    return float(symbols.get("DATE_IN_PAST", {}).get("score", 0.0))


def verdicts_at(scores: dict[str, list[float]], junk: float, reject: float) -> dict[str, list[str]]:
    """Where each message lands by its score: ``spam_e2e.rates``' form."""
    return {
        group: ["refused" if s >= reject else "Junk" if s >= junk else "INBOX" for s in values]
        for group, values in scores.items()
    }


def in_junk(scores: Sequence[float], threshold: float) -> float:
    """Percentage of ``scores`` at ``threshold`` or more."""
    return 100 * sum(s >= threshold for s in scores) / len(scores)


def threshold_for(scores: Sequence[float], share: float) -> float:
    """The lowest score threshold that puts at most ``share`` percent of ``scores`` in Junk:
    just above the score of the message that would tip it over."""
    ordered = sorted(scores, reverse=True)
    allowed = int(share * len(ordered) / 100)  # messages that may be at or above it
    if allowed >= len(ordered):
        return ordered[-1]
    return ordered[allowed] + 0.001


def curve(scores: dict[str, list[float]], fixed: Sequence[float]) -> list[str]:
    """Lines of figures at other thresholds: at each of ``fixed``, and at the thresholds
    that put 2% of hard ham and 0.1% of easy ham in Junk (issue 17's ceilings)."""
    lines = []
    points = [(f"at {t:g}", t) for t in fixed]
    for group, share in (("hard-ham-1", 2.0), ("easy-ham-2", 0.1)):
        t = threshold_for(scores[group], share)
        points.append((f"at {t:.2f} ({group} <= {share:g}%)", t))
    for name, t in points:
        figures = " ".join(f"{g} {in_junk(s, t):.2f}%" for g, s in scores.items())
        lines.append(f"{name}: {figures}")
    return lines


def at_ceiling(scores: dict[str, list[float]]) -> dict[str, float]:
    """Spam 2 caught at the thresholds that put issue 17's ceilings of ham in Junk."""
    return {
        f"{group} <= {share:g}%": in_junk(scores["spam-2"], threshold_for(scores[group], share))
        for group, share in (("hard-ham-1", 2.0), ("easy-ham-2", 0.1))
    }
