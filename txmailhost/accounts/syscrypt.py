"""yescrypt (``$y$``), the crypt(3) format Debian 11 and later write to ``/etc/shadow``.

Dovecot checks such a hash with the C library's ``crypt()`` (``{CRYPT}`` or PAM), so users
moving in from a Dovecot that logged system users in have it. No maintained Python library
implements yescrypt, but every system that writes it has libxcrypt, its reference home: this
module calls libxcrypt's reentrant ``crypt_rn`` (through ctypes, which lets the GIL go for the
call, so the thread a login runs in doesn't hold up the others) and ``crypt_checksalt``, never
hashing code of ours. Where libxcrypt is missing (not Linux with glibc's successor), such a
hash matches nothing, and ``migrate`` says why before making an account with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import re
from functools import cache

# yescrypt's string: $y$PARAMS$SALT$HASH in crypt's base64 alphabet (the hash 43 characters).
SHAPE = re.compile(r"\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]*\$[./0-9A-Za-z]{43}")
# sizeof(struct crypt_data) in libxcrypt (crypt.h: CRYPT_DATA_INTERNAL_SIZE + the outputs).
_CRYPT_DATA_SIZE = 32768
_SALT_OK = 0  # crypt_checksalt's CRYPT_SALT_OK


@cache
def _library() -> ctypes.CDLL | None:
    """libxcrypt, if it is there and has the reentrant calls (libxcrypt 4.3 and later)."""
    name = ctypes.util.find_library("crypt")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        crypt_rn, checksalt = lib.crypt_rn, lib.crypt_checksalt
    except (OSError, AttributeError):
        return None
    crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    crypt_rn.restype = ctypes.c_void_p  # a pointer into the caller's buffer, or NULL
    checksalt.argtypes = [ctypes.c_char_p]
    checksalt.restype = ctypes.c_int
    return lib


def problem(value: str) -> str | None:
    """Why a ``$y$`` string can match no password here (None when it can): its shape, then
    whether libxcrypt takes its parameters (``crypt_checksalt``, which hashes nothing)."""
    if not SHAPE.fullmatch(value):
        return "not $y$PARAMS$SALT$HASH in crypt's base64 alphabet"
    lib = _library()
    if lib is None:
        return "yescrypt is checked by the system's libxcrypt, which this system lacks"
    if lib.crypt_checksalt(value.encode("ascii")) != _SALT_OK:
        return "parameters libxcrypt refuses"
    return None


def verify(password: str, encoded: str) -> bool:
    """Does ``password`` (as UTF-8, as the system's passwd wrote it) hash to ``encoded``?"""
    lib = _library()
    if lib is None or not SHAPE.fullmatch(encoded):
        return False
    secret = password.encode("utf-8")
    if b"\0" in secret:  # crypt() would stop at it and check a shorter password
        return False
    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    out = lib.crypt_rn(secret, encoded.encode("ascii"), data, _CRYPT_DATA_SIZE)
    if not out:
        return False
    return hmac.compare_digest(ctypes.string_at(out), encoded.encode("ascii"))
