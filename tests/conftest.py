"""Hypothesis profiles for the parser property tests (``-m fuzz``), and a cheaper password
hash for the accounts the tests make in this process.

``ci`` is the default: few examples, derandomized, so the whole fuzz set stays within ~30 s on a
small machine and a red CI run always replays. ``long`` explores for real (fresh random seeds,
many examples): ``python -m pytest tests -m fuzz --hypothesis-profile long``, or
``python -m bench --fuzz``. Both keep a deadline: a parser must answer every input quickly, and
the deadline is how a property test notices one that doesn't (pathological inputs also have
their own explicit time bounds in the tests).
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

from txmailhost.accounts import passwords

# The hashes this process makes (users of the in-process worlds, thousands of them) at scrypt's
# cost 2**10 instead of the server's 2**15: ~2 ms instead of ~85 ms each, a third of the
# IMAP tests' time. Verifying reads the cost from the hash, so logins take the same path.
# Servers the tests start, and the CLI they run, are other processes and hash at the real
# cost (tests/accounts/test_accounts.py checks it).
passwords.LOG_N = 10

# Generous against a busy 2-core CI machine; parsers answer in microseconds to milliseconds.
_DEADLINE = timedelta(milliseconds=1500)
# Protocol sessions over a real Maildir fsync: the disk's time, seconds on a loaded machine. A
# session that takes this long is stuck; the parsers' own tests keep the tight deadline above.
SESSION_DEADLINE = timedelta(seconds=30)

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=_DEADLINE,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=5000,
    deadline=_DEADLINE,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")
