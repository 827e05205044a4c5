"""Is a Dovecot password hash one that a login can ever match? Checked before ``migrate
dovecot`` makes an account with it.

``accounts/legacy.py`` verifies these hashes at login, and answers False for a malformed one:
right at login, but an account made from ``{SHA512-CRYPT}garbage`` or an empty ``{SSHA512}``
is one nobody can ever log in to, and the migration said "account created". So each scheme's
value is parsed here, without hashing anything, by the same libraries that verify it
(libpass's parsers check the length, the alphabet and the base64 of their format;
argon2-cffi's its parameters), and a user with a hash they refuse is skipped, with the
reason.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import argon2

from txmailhost.accounts import syscrypt
from txmailhost.accounts.legacy import CRYPT_IDS, PASSLIB_SCHEMES, YESCRYPT_ID

_B64 = r"[A-Za-z0-9+/]+"
_ARGON2 = re.compile(rf"\$argon2(id|i)\$v=\d+\$m=\d+,t=\d+,p=\d+\${_B64}\${_B64}")


def _passlib(handler: object, prefix: str = "") -> Callable[[str], str | None]:
    def problem(value: str) -> str | None:
        try:
            with warnings.catch_warnings():  # bcrypt's "padding bits" warning: it verifies
                warnings.simplefilter("ignore")
                parsed = handler.from_string(prefix + value)  # type: ignore[attr-defined]
        except (ValueError, TypeError) as e:
            return str(e) or "malformed"
        return None if parsed.checksum else "a salt without a hash"

    return problem


def _argon2(value: str) -> str | None:
    if not _ARGON2.fullmatch(value):
        return "not $argon2id$v=N$m=N,t=N,p=N$SALT$HASH with SALT and HASH in base64"
    try:
        argon2.extract_parameters(value)
    except argon2.exceptions.InvalidHashError:
        return "parameters argon2 can't use"
    return None


def _crypt(value: str) -> str | None:
    prefix = value[: value.find("$", 1) + 1]
    if prefix == YESCRYPT_ID:
        return syscrypt.problem(value)
    scheme = CRYPT_IDS.get(prefix)
    if scheme is None:
        known = ", ".join([*CRYPT_IDS, YESCRYPT_ID])
        return f"not a crypt format that is checked at login ({known})"
    return SHAPES[scheme](value)


# One entry per scheme of accounts/legacy.py's SCHEMES, the libpass ones from its own table
# (tests/ops/test_dovecot_hashes.py checks the two stay the same).
SHAPES: dict[str, Callable[[str], str | None]] = {
    **{name: _passlib(*handler) for name, handler in PASSLIB_SCHEMES.items()},
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
    "CRYPT": _crypt,
}


def hash_problem(scheme: str, value: str) -> str | None:
    """Why ``{scheme}value`` can match no password (None when it can)."""
    problem = SHAPES[scheme](value)
    return None if problem is None else f"malformed {{{scheme}}} hash: {problem}"
