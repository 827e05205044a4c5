"""``python -m bench.spam_corpus --e2e``: the public corpus through a real server, SpamAssassin beside.

Per split (``bench.spam_corpus``'s halves and draws, so the in-memory figures of the same
seed are comparable):

1. a txmailhost is started as an administrator would (``bench.targets.running``, default
   filters: greylisting and the spam score; mail authentication off, as the corpus's senders
   can't be looked up here) with one account;
2. it is trained the way a user trains it, over IMAP: each training spam is APPENDed to
   INBOX and then moved (``UID MOVE``) into Junk; each training ham is APPENDed to Junk and
   moved out of it into a folder of its own — the IMAP trainer learns the first as spam, the
   second as ham and allows its sender, as for a user rescuing mail from Junk. Batches of
   ``BATCH`` wait for the trainer to have learned them (the counts in the store's file) so
   a ham's "out of Junk" is never learned before its "into Junk";
3. the test halves (spam 2, easy ham 2, hard ham) are delivered over SMTP from 127.0.0.1,
   envelope sender the message's ``Return-Path:`` (else its ``From:``), each with an
   ``X-Bench-Id:`` field (not a token) saying which it is;
4. where each landed is read back over IMAP (INBOX or Junk), or the SMTP reply refused it:
   as spam (``550 5.7.1 ... spam``, with ``reject_score`` set), which counts as caught, or
   for another reason (a bare CR, an envelope address RFC 5321 forbids — corpus messages
   a server must refuse), which is counted apart and left out of the percentages;
5. SpamAssassin (Debian's ``spamd``, stock rules, local tests only, Bayes in a directory of
   the run, auto-learning off) learns the same training messages with ``sa-learn`` and
   judges the same test messages through ``spamc`` at its default 5.0 (its scores kept, so
   the curve is read as rspamd's);
6. with ``--rspamd``, rspamd (``bench.spam_rspamd``) learns the same training messages in a
   fresh Redis, twice (as its stock config allows, and every message), and scans the same
   test messages; in Junk at its own ``add header`` score.
"""

from __future__ import annotations

import collections
import email.utils
import imaplib
import os
import re
import shutil
import smtplib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench import targets
from bench.server import PASSWORD, free_port, stop, wait_for_port
from bench.spam_corpus import TEST_GROUPS, split
from txmailhost.spam.bayes import TokenStore

USER = "u1@bench.test"
BATCH = 100
TRAINED = "Trained"  # where rescued ham is moved: out of Junk, not into INBOX's count
_EXTRA = "\n[filters.settings.spam]\njunk_score = {junk}\n"


def envelope_sender(message: bytes) -> str:
    """The message's Return-Path (else From) address: what its sender's MTA said in MAIL."""
    header = message.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for name in ("return-path", "from"):
        match = re.search(rf"^{name}:(.*(?:\r\n[ \t].*)*)", header, re.I | re.M)
        if match:
            _n, address = email.utils.parseaddr(match.group(1).replace("\r\n", " "))
            if "@" in address and address.isascii() and " " not in address:
                return address
    return ""


# -- txmailhost ---------------------------------------------------------------------------------


def _learned(data: Path) -> tuple[int, int]:
    store = TokenStore(str(data / "spam" / "bayes.sqlite"))
    try:
        return store.totals(USER)
    finally:
        store.close()


def _wait_learned(data: Path, want: tuple[int, int], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while _learned(data) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the trainer learned {_learned(data)}, expected {want}")
        time.sleep(0.2)


def _append(imap: imaplib.IMAP4, mailbox: str, messages: list[bytes]) -> list[str]:
    uids = []
    for message in messages:
        status, reply = imap.append(mailbox, None, None, message)
        if status != "OK":
            raise RuntimeError(f"APPEND {mailbox}: {reply}")
        code = re.search(rb"APPENDUID \d+ (\d+)", reply[0] or b"")
        if code is None:
            raise RuntimeError(f"APPEND without APPENDUID: {reply}")
        uids.append(code.group(1).decode())
    return uids


def _move(imap: imaplib.IMAP4, source: str, uids: list[str], target: str) -> None:
    imap.select(source)
    status, reply = imap.uid("MOVE", ",".join(uids), target)
    if status != "OK":
        raise RuntimeError(f"UID MOVE {source} -> {target}: {reply}")
    imap.close()


def train_over_imap(
    server: targets.Server, data: Path, spam: list[bytes], ham: list[bytes]
) -> float:
    """Train as a user does (see the module docstring); seconds taken."""
    started = time.monotonic()
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(USER, PASSWORD)
    for mailbox in ("Junk", TRAINED):
        imap.create(mailbox)  # NO when it exists already: fine
    spam_done, ham_done = 0, 0
    for start in range(0, len(spam), BATCH):
        uids = _append(imap, "INBOX", spam[start : start + BATCH])
        _move(imap, "INBOX", uids, "Junk")
        spam_done += len(uids)
        _wait_learned(data, (spam_done, ham_done))
    for start in range(0, len(ham), BATCH):
        batch = ham[start : start + BATCH]
        uids = _append(imap, "Junk", batch)
        _wait_learned(data, (spam_done + len(uids), ham_done))  # learned as spam first
        _move(imap, "Junk", uids, TRAINED)
        ham_done += len(uids)
        _wait_learned(data, (spam_done, ham_done))
    # Training mail out of the way: what lands in INBOX and Junk next is the test's.
    for mailbox in ("INBOX", "Junk"):
        imap.select(mailbox)
        imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        imap.expunge()
        imap.close()
    imap.logout()
    return time.monotonic() - started


def deliver(server: targets.Server, test: dict[str, list[bytes]]) -> tuple[dict[str, str], float]:
    """Each test message over SMTP; (X-Bench-Id -> "refused" for those the spam filter
    refused, "not accepted: REPLY" for those refused for another reason; seconds)."""
    refused: dict[str, str] = {}
    started = time.monotonic()
    smtp = smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="client.bench.invalid")
    for group, messages in test.items():
        for index, message in enumerate(messages):
            ident = f"{group}/{index}"
            try:
                smtp.sendmail(
                    envelope_sender(message),
                    [USER],
                    f"X-Bench-Id: {ident}\r\n".encode() + message,
                    mail_options=["BODY=8BITMIME"],
                )
            except smtplib.SMTPResponseException as e:
                reply = e.smtp_error.decode("utf-8", "replace")
                as_spam = e.smtp_code == 550 and "spam" in reply
                refused[ident] = "refused" if as_spam else f"not accepted: {e.smtp_code} {reply}"
                smtp.rset()
            except smtplib.SMTPRecipientsRefused as e:
                refused[ident] = f"not accepted: {e.recipients}"
    smtp.quit()
    return refused, time.monotonic() - started


def landed(server: targets.Server) -> dict[str, str]:
    """X-Bench-Id -> the mailbox it is in."""
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(USER, PASSWORD)
    where: dict[str, str] = {}
    for mailbox in ("INBOX", "Junk"):
        status, reply = imap.select(mailbox, readonly=True)
        if status != "OK" or reply[0] == b"0":
            continue
        status, items = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (X-Bench-Id)])")
        for item in items:
            if isinstance(item, tuple):
                match = re.search(rb"X-Bench-Id: (\S+)", item[1], re.I)
                if match:
                    where[match.group(1).decode()] = mailbox
        imap.close()
    imap.logout()
    return where


def run_txmailhost(
    workdir: Path, spam: list[bytes], ham: list[bytes], test: dict[str, list[bytes]], junk: float
) -> dict[str, object]:
    extra = _EXTRA.format(junk=junk)
    with targets.running(workdir, mailauth=False, extra_config=extra, name="txmailhost") as server:
        server.add_user(USER)
        data = workdir / "data"
        trained = train_over_imap(server, data, spam, ham)
        refused, delivered = deliver(server, test)
        where = landed(server)
    verdicts: dict[str, list[str]] = {}
    for group, messages in test.items():
        verdicts[group] = [
            refused.get(f"{group}/{i}") or where.get(f"{group}/{i}", "missing")
            for i in range(len(messages))
        ]
    return {"verdicts": verdicts, "train_s": trained, "deliver_s": delivered}


# -- SpamAssassin -------------------------------------------------------------------------------


def spamassassin_available() -> str | None:
    """Why SpamAssassin can't run beside it here, or None."""
    for tool in ("spamd", "spamc", "sa-learn"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (Debian: spamassassin, spamc)"
    return None


def _write(directory: Path, messages: list[bytes]) -> Path:
    directory.mkdir(parents=True)
    for index, message in enumerate(messages):
        (directory / f"{index}.eml").write_bytes(message.replace(b"\r\n", b"\n"))
    return directory


@contextmanager
def spamd(home: Path, bayes: Path) -> Iterator[int]:
    """spamd on a loopback port, local tests only, our Bayes directory, no learning."""
    port = free_port()
    spamd_path = shutil.which("spamd") or "/usr/sbin/spamd"
    argv = [
        spamd_path,
        "-L",
        "-x",
        f"--helper-home-dir={home}",
        "-i",
        f"127.0.0.1:{port}",
        "-A",
        "127.0.0.1",
        "-m",
        "2",
        "-s",
        "stderr",
        "--cf",
        f"bayes_path {bayes}/bayes",
        "--cf",
        "bayes_auto_learn 0",
        "--cf",
        "use_bayes 1",
        "--cf",
        "bayes_learn_to_journal 0",
    ]
    if os.geteuid() == 0:  # spamd's children drop to nobody: they must read the Bayes files
        argv[1:1] = ["-u", "nobody"]
    with open(home / "spamd.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        wait_for_port("127.0.0.1", port, 120, alive=lambda: process.poll() is None)
        yield port
    finally:
        stop(process, 20)


def run_spamassassin(
    workdir: Path, spam: list[bytes], ham: list[bytes], test: dict[str, list[bytes]], junk: float
) -> dict[str, object]:
    home = workdir / "sa-home"
    bayes = home / "bayes"
    bayes.mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    started = time.monotonic()
    for kind, messages in (("--spam", spam), ("--ham", ham)):
        directory = _write(workdir / ("sa-" + kind.strip("-")), messages)
        subprocess.run(
            ["sa-learn", "-L", "--no-sync", f"--dbpath={bayes}/bayes", kind, str(directory)],
            check=True,
            env=env,
            capture_output=True,
        )
    subprocess.run(["sa-learn", "--sync", f"--dbpath={bayes}/bayes"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    dump = subprocess.run(  # what SpamAssassin says it learned: the Bayes files are the ones used
        ["sa-learn", "--dump", "magic", f"--dbpath={bayes}/bayes"], env=env, capture_output=True
    )
    learned = re.findall(rb"(\d+)\s+0\s+non-token data: n(spam|ham)", dump.stdout)
    if sorted(kind for _n, kind in learned) != [b"ham", b"spam"]:
        raise RuntimeError(f"sa-learn learned nothing in {bayes}: {dump.stdout[:300]!r}")
    trained = time.monotonic() - started
    # spamd's children run as nobody when spamd is root: they must reach the Bayes files,
    # through the run's directory too (tempfile makes it 0700; spamd then says "no dbs
    # present" and judges without Bayes, silently)
    workdir.chmod(0o755)
    for path in (home, *home.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o666)
    started = time.monotonic()
    verdicts: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    with spamd(home, bayes) as port:

        def check(message: bytes) -> float:
            reply = subprocess.run(
                ["spamc", "-d", "127.0.0.1", "-p", str(port), "-c", "-t", "120", "-s", "50000000"],
                input=message.replace(b"\r\n", b"\n"),
                capture_output=True,
                check=False,
            )
            score = float(reply.stdout.split(b"/")[0] or b"nan")
            if score != score:  # spamc couldn't ask: say so rather than count it as ham
                raise RuntimeError(f"spamc: {reply.stderr.decode(errors='replace')}")
            return score

        with ThreadPoolExecutor(2) as pool:
            for group, messages in test.items():
                scores[group] = list(pool.map(check, messages))
                verdicts[group] = ["Junk" if s >= junk else "INBOX" for s in scores[group]]
    return {
        "verdicts": verdicts,
        "scores": scores,
        "train_s": trained,
        "deliver_s": time.monotonic() - started,
    }


# -- report -------------------------------------------------------------------------------------


def rates(result: dict[str, object]) -> dict[str, float]:
    """Per test group: percentage in Junk or refused as spam (for spam: caught), of the
    messages the server accepted or refused as spam."""
    verdicts: dict[str, list[str]] = result["verdicts"]  # type: ignore[assignment]
    out = {}
    for group, where in verdicts.items():
        missing = where.count("missing")
        if missing:
            raise RuntimeError(f"{missing} messages of {group} are in neither INBOX nor Junk")
        judged = [w for w in where if not w.startswith("not accepted")]
        out[group] = 100 * sum(w in ("Junk", "refused") for w in judged) / len(judged)
    return out


def _subject(message: bytes) -> str:
    match = re.search(rb"^Subject:[ \t]*(.*)", message.split(b"\r\n\r\n", 1)[0], re.I | re.M)
    return match.group(1).decode("latin-1")[:70] if match else ""


def _report_ham(name: str, result: dict[str, object], test: dict[str, list[bytes]]) -> None:
    """Ham not in INBOX, and anything not accepted: what a reader checks first."""
    verdicts: dict[str, list[str]] = result["verdicts"]  # type: ignore[assignment]
    for group, where in verdicts.items():
        for index, verdict in enumerate(where):
            ham_misfiled = group != "spam-2" and verdict != "INBOX"
            if ham_misfiled or verdict.startswith("not accepted"):
                print(
                    f"    {name}: {group}/{index} {verdict[:80]}: {_subject(test[group][index])!r}"
                )


def run(
    corpus: dict[str, list[bytes]],
    size: int,
    repeats: int,
    junk: float,
    spamassassin: bool,
    first: int = 0,
    ours: bool = True,
    rspamd_ip: str | None = None,
) -> int:
    """Each split through txmailhost (``ours``), SpamAssassin and, with ``rspamd_ip``, rspamd
    (``bench.spam_rspamd``, scanned as if from that address); the table of all."""
    from bench import spam_rspamd  # imports this module: not at the top

    why = spamassassin_available() if spamassassin else "not asked for"
    why_rspamd = spam_rspamd.available() if rspamd_ip else "not asked for"
    figures: dict[str, list[dict[str, float]]] = {"txmailhost": [], "SpamAssassin": []}
    figures |= {f"rspamd, {mode}": [] for mode in spam_rspamd.MODES}
    at_ceiling: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    for seed in range(first, first + repeats):
        spam, ham, test = split(corpus, size, seed)
        with tempfile.TemporaryDirectory(prefix="spam-e2e-") as work:
            os.chmod(work, 0o755)  # see run_spamassassin
            if ours:
                mine = run_txmailhost(Path(work) / "txmailhost", spam, ham, test, junk)
                figures["txmailhost"].append(rates(mine))
                _report_ham("txmailhost", mine, test)
                print(
                    f"split {seed}: txmailhost {_cells(figures['txmailhost'][-1])}  (IMAP"
                    f" training {mine['train_s']:.0f} s, SMTP delivery {mine['deliver_s']:.0f} s)",
                    flush=True,
                )
            if why is None:
                theirs = run_spamassassin(Path(work), spam, ham, test, junk)
                figures["SpamAssassin"].append(rates(theirs))
                at_ceiling["SpamAssassin"].append(spam_rspamd.at_ceiling(theirs["scores"]))  # type: ignore[arg-type]
                _report_ham("SpamAssassin", theirs, test)
                print(
                    f"split {seed}: SpamAssassin {_cells(figures['SpamAssassin'][-1])}"
                    f"  (sa-learn {theirs['train_s']:.0f} s, spamc {theirs['deliver_s']:.0f} s)",
                    flush=True,
                )
            if rspamd_ip and why_rspamd is None:
                for mode, bulk in spam_rspamd.MODES.items():
                    name = f"rspamd, {mode}"
                    found = spam_rspamd.run_rspamd(
                        Path(work) / f"rspamd-{bulk}", spam, ham, test, bulk, rspamd_ip
                    )
                    _report_rspamd(name, seed, found, len(spam), len(ham))
                    for row, result in (
                        (name, found),
                        (f"{name}, no DATE_IN_PAST", found["undated"]),
                    ):
                        figures.setdefault(row, []).append(rates(result))  # type: ignore[arg-type]
                        at_ceiling[row].append(spam_rspamd.at_ceiling(result["scores"]))  # type: ignore[index]
                    print(f"    without DATE_IN_PAST: {_cells(figures[row][-1])}", flush=True)
    if why is not None:
        print(f"SpamAssassin not run: {why}")
    if why_rspamd is not None:
        print(f"rspamd not run: {why_rspamd}")
    print(f"\n{size} + {size} trained, {repeats} splits, Junk at {junk}: mean (range)")
    if any(figures[f"rspamd, {mode}"] for mode in spam_rspamd.MODES):
        print("(rspamd: in Junk at its own add header score or more; see the splits' lines)")
    print(f"{'':38}{'spam 2 caught':>24}{'easy ham 2 in Junk':>24}{'hard ham in Junk':>24}")
    for name, runs in figures.items():
        if not runs:
            continue
        cells = []
        for group in TEST_GROUPS:
            values = [r[group] for r in runs]
            cells.append(f"{statistics.mean(values):.2f}% ({min(values):.2f}-{max(values):.2f})")
        print(f"{name:38}" + "".join(f"{c:>24}" for c in cells))
    for name, runs in at_ceiling.items():
        cells = []
        for key in ("hard-ham-1 <= 2%", "easy-ham-2 <= 0.1%"):
            values = [r[key] for r in runs]
            cells.append(
                f"spam 2 caught at the threshold with {key} in Junk: "
                f"{statistics.mean(values):.2f}% ({min(values):.2f}-{max(values):.2f})"
            )
        print(f"{name}: " + "; ".join(cells))
    return 0


def _report_rspamd(name: str, seed: int, found: dict[str, object], spam: int, ham: int) -> None:
    """A split's rspamd figures, what it learned, what it answered and its curve."""
    from bench import spam_rspamd

    learned: dict[str, int] = found["learned"]  # type: ignore[assignment]
    print(
        f"split {seed}: {name} {_cells(rates(found))}  (learned {learned['spam']} of {spam} spam,"
        f" {learned['ham']} of {ham} ham in {found['train_s']:.0f} s; scanned in"
        f" {found['deliver_s']:.0f} s, {found['bayes']} with a BAYES_ symbol)",
        flush=True,
    )
    for reason, count in found["not_learned"].most_common(4):  # type: ignore[attr-defined]
        print(f"    not learned ({count}): {reason}")
    actions = found["actions"].most_common()  # type: ignore[attr-defined]
    print("    actions answered: " + ", ".join(f"{a} {n}" for a, n in actions))
    junk, reject = found["thresholds"]  # type: ignore[misc]
    print(f"    in Junk at {junk:g} or more, refused at {reject:g}; other thresholds:")
    for line in spam_rspamd.curve(found["scores"], (4, 5, 7, 8, 10, 15)):  # type: ignore[arg-type]
        print(f"    {line}")


def _cells(rates: dict[str, float]) -> str:
    return " ".join(f"{g} {rates[g]:.2f}%" for g in TEST_GROUPS)
