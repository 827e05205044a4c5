"""Login load: clients that log in and out all day, first logins at once, and an attacker.

- ``relogins``: ``clients`` IMAP clients each connecting, logging in with the right password
  and logging out, again and again for ``seconds`` (what mail clients that reconnect do, and
  Dovecot's imaptest stress mode at its simplest). The rate is completed logins per second.
- ``first_logins``: every account connects and logs in at once, each for the first time (no
  cache can help); the caller samples the server's memory meanwhile.
- ``attack``: ``threads`` threads spread over ``addresses`` loopback source addresses send
  wrong ``AUTH PLAIN`` for one account over submission after STARTTLS, as fast as the server
  answers, for ``seconds``; meanwhile the account's owner logs in over IMAP from 127.0.0.1
  every ``every`` seconds. Counts the guesses the server checked (``535``), the attempts it
  refused unchecked (``454``), and the owner's logins that got in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field

from bench.imap_load import ImapClient, ImapError
from bench.stats import percentile


@dataclass
class ReloginResult:
    logins: int = 0
    failed: int = 0
    seconds: float = 0.0
    latency: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.logins / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        p50 = percentile(self.latency, 50) * 1e3 if self.latency else float("nan")
        return f"{self.logins} logins in {self.seconds:.1f}s ({self.rate:.0f}/s, p50 {p50:.1f} ms), {self.failed} failed"


async def relogins(
    host: str, port: int, user: str, password: str, clients: int, seconds: float
) -> ReloginResult:
    result = ReloginResult()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                session = await ImapClient.login(host, port, user, password, timeout=30)
                await session.logout()
            except (OSError, TimeoutError, ImapError) as e:
                result.failed += 1
                if len(result.errors) < 3:
                    result.errors.append(repr(e))
                continue
            result.latency.append(time.perf_counter() - started)
            result.logins += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def first_logins(
    host: str, port: int, accounts: list[tuple[str, str]]
) -> tuple[float, list[str]]:
    """Seconds until every account has logged in (or failed), all starting at once, and the
    failures; then all log out."""
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(ImapClient.login(host, port, user, password, timeout=300) for user, password in accounts),
        return_exceptions=True,
    )
    took = time.perf_counter() - started
    sessions = [o for o in outcomes if isinstance(o, ImapClient)]
    await asyncio.gather(*(s.logout() for s in sessions), return_exceptions=True)
    return took, [repr(o) for o in outcomes if not isinstance(o, ImapClient)]


@dataclass
class AttackResult:
    checked: int = 0  # wrong guesses the server answered 535: it checked them
    refused: int = 0  # attempts refused unchecked (454)
    other: int = 0
    seconds: float = 0.0
    owner_ok: int = 0
    owner_tries: int = 0
    owner_latency: list[float] = field(default_factory=list)
    owner_errors: list[str] = field(default_factory=list)

    @property
    def guesses_per_second(self) -> float:
        return self.checked / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.checked} guesses checked ({self.guesses_per_second:.2f}/s), {self.refused}"
            f" refused unchecked, {self.other} other, in {self.seconds:.0f}s; the owner got in"
            f" {self.owner_ok} of {self.owner_tries} times"
        )


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def attack(
    host: str,
    submission_port: int,
    imap_port: int,
    victim: str,
    password: str,
    *,
    threads: int = 8,
    addresses: int = 3,
    seconds: float = 60.0,
    every: float = 2.0,
) -> AttackResult:
    result = AttackResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def attacker(index: int) -> None:
        source = f"127.0.0.{61 + index % addresses}"
        n = 0
        while time.monotonic() < deadline:
            n += 1
            token = base64.b64encode(f"\0{victim}\0wrong-{index}-{n}".encode()).decode()
            try:
                with smtplib.SMTP(
                    host, submission_port, timeout=60, source_address=(source, 0)
                ) as s:
                    s.ehlo()
                    s.starttls(context=_context())
                    s.ehlo()
                    code = s.docmd("AUTH", "PLAIN " + token)[0]
            except (OSError, smtplib.SMTPException):
                code = 0
            with lock:
                if code == 535:
                    result.checked += 1
                elif code == 454:
                    result.refused += 1
                else:
                    result.other += 1

    def owner() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            result.owner_tries += 1
            try:
                asyncio.run(_owner_login(host, imap_port, victim, password))
                result.owner_ok += 1
                result.owner_latency.append(time.perf_counter() - started)
            except (OSError, TimeoutError, ImapError) as e:
                if len(result.owner_errors) < 3:
                    result.owner_errors.append(repr(e))
            time.sleep(every)

    workers = [threading.Thread(target=attacker, args=(i,)) for i in range(threads)]
    workers.append(threading.Thread(target=owner))
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result.seconds = time.perf_counter() - started
    return result


async def _owner_login(host: str, port: int, user: str, password: str) -> None:
    session = await ImapClient.login(host, port, user, password, timeout=60)
    with contextlib.suppress(OSError, ImapError):
        await session.logout()
