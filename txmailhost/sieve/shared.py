"""Sieve state in the database every node shares, for ``[store] backend = "postgres"``.

Why: with several nodes behind one MX name, a script uploaded over ManageSieve to node A must
sort the mail node B delivers, and a vacation reply must go to a sender once, not once per
node that happens to deliver their mail. The file variants (``scripts.py``, the
``ResponseLog`` of ``vacation.py``, ``Notified`` of ``delivery.py``) keep each node's own copy
in ``DATA/sieve``; these keep the one copy in tables of step 7 of ``store/postgres_schema.py``:

- :class:`SharedScriptStore`: ``sieve_scripts``, one row per (user, script), at most one
  active per user (a partial unique index). The same methods, errors (``ScriptError`` with
  RFC 5804 codes) and quotas as ``ScriptStore``; a user's writes are serialised by an
  advisory lock on the address, so two PUTSCRIPTs on two nodes can't pass the script quota
  together. The administrator's scripts for ``include :global`` stay files
  (``DATA/sieve/global``, copied to every node, docs/scaling.rst).
- :class:`SharedResponseLog`: ``sieve_responses``, whom each user's vacation answered, until
  when. The claim is one ``INSERT ... ON CONFLICT ... WHERE`` statement: of two nodes
  delivering mail from one sender at once, exactly one gets the row and replies. A user's
  rows whose period is over are deleted when the next reply goes out.
- :class:`SharedNotified`: ``sieve_notices``, the last script failure each user was told of.

Every method blocks on the database: callers run them off the reactor (the ManageSieve pool,
the delivery thread, the storage pool), as they do the file variants. A database that can't
be reached raises ``psycopg.OperationalError``: ManageSieve answers ``NO (TRYLATER)``, and
delivery fails temporarily (the message is retried, never filed unsorted).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from txmailhost.sieve.language import Script, compile_script
from txmailhost.sieve.scripts import ScriptError, ScriptInfo, ScriptStore, check_name
from txmailhost.sieve.vacation import MAX_SECONDS, MIN_SECONDS, response_key

_CACHE_LIMIT = 10_000  # compiled scripts kept; beyond that the cache starts again


def _owner(user: str) -> str:
    """The canonical address rows are kept under; ScriptError for anything else."""
    address = user.lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise ScriptError(f"not a user address: {user!r}")
    return address


class SharedScriptStore:
    """Every user's scripts in ``sieve_scripts`` of ``state`` (a ``store.pgstate.SharedState``);
    ``global_root`` is the directory of the administrator's scripts (``DATA/sieve``)."""

    def __init__(
        self,
        state: Any,
        global_root: str,
        max_scripts: int = 20,
        max_script_size: int = 64 * 1024,
    ) -> None:
        self.state = state
        self.max_scripts = max_scripts
        self.max_script_size = max_script_size
        self._files = ScriptStore(global_root, max_scripts, max_script_size)  # include :global
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, str], tuple[str, Script]] = {}

    def state_key(self, user: str) -> str:
        """What the user's vacation and failure memories are kept under: the address."""
        return _owner(user)

    # -- reading -------------------------------------------------------------------------------

    def active_name(self, user: str) -> str | None:
        rows = self.state.rows(
            "SELECT name FROM sieve_scripts WHERE address = %s AND active", (_owner(user),)
        )
        return rows[0][0] if rows else None

    def list(self, user: str) -> list[ScriptInfo]:
        rows = self.state.rows(
            "SELECT name, active FROM sieve_scripts WHERE address = %s ORDER BY name",
            (_owner(user),),
        )
        return [ScriptInfo(name, active) for name, active in rows]

    def get(self, user: str, name: str) -> str:
        rows = self.state.rows(
            "SELECT script FROM sieve_scripts WHERE address = %s AND name = %s",
            (_owner(user), name),
        )
        if not rows:
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
        return rows[0][0]

    def active_script(self, user: str) -> tuple[str, Script] | None:
        """(name, compiled script) of the user's active script, None when there is none; one
        query per delivery, compiled again only when the text changed."""
        address = _owner(user)
        rows = self.state.rows(
            "SELECT name, script FROM sieve_scripts WHERE address = %s AND active", (address,)
        )
        if not rows:
            return None
        name, text = rows[0]
        return name, self._compile(address, name, text)

    def included(self, user: str, location: str, name: str) -> Script | None:
        """The script ``include`` names (RFC 6609): the user's, or the administrator's file."""
        if location == "global":
            return self._files.included(user, location, name)
        try:
            address = _owner(user)
            text = self.get(address, name)
        except ScriptError:
            return None
        return self._compile(address, name, text)

    def _compile(self, address: str, name: str, text: str) -> Script:
        cached = self._compiled.get((address, name))
        if cached is not None and cached[0] == text:
            return cached[1]
        script = compile_script(text)
        with self._lock:
            if len(self._compiled) > _CACHE_LIMIT:
                self._compiled.clear()
            self._compiled[(address, name)] = (text, script)
        return script

    # -- quotas ----------------------------------------------------------------------------------

    def check_space(self, user: str, name: str, size: int) -> None:
        """RFC 5804 HAVESPACE: raise ScriptError(QUOTA/...) if the script wouldn't fit."""
        with self.state.transaction() as conn:
            self._check_space(conn, _owner(user), name, size)

    def _check_space(self, conn: Any, address: str, name: str, size: int) -> None:
        check_name(name)
        if size > self.max_script_size:
            raise ScriptError(
                f"scripts may be at most {self.max_script_size} octets", "QUOTA/MAXSIZE"
            )
        count, exists = conn.execute(
            "SELECT count(*), bool_or(name = %s) FROM sieve_scripts WHERE address = %s",
            (name, address),
        ).fetchone()
        if not exists and count >= self.max_scripts:
            raise ScriptError(f"at most {self.max_scripts} scripts per user", "QUOTA/MAXSCRIPTS")

    # -- writing ---------------------------------------------------------------------------------

    def _locked(self, conn: Any, address: str) -> None:
        """Serialise this user's writes across nodes (until the transaction ends)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sieve:' || %s))", (address,))

    def put(self, user: str, name: str, text: str, check: bool = True) -> Script | None:
        """Check ``text`` (SieveSyntaxError) and store it as ``name``, replacing any old one;
        ``check=False`` stores it without compiling it (``ScriptStore.put``)."""
        address = _owner(user)
        with self.state.transaction() as conn:
            self._locked(conn, address)
            self._check_space(conn, address, name, len(text.encode("utf-8")))
            script = compile_script(text, max_size=self.max_script_size) if check else None
            conn.execute(
                "INSERT INTO sieve_scripts (address, name, script, updated)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (address, name)"
                " DO UPDATE SET script = excluded.script, updated = excluded.updated",
                (address, name, text, time.time()),
            )
        return script

    def set_active(self, user: str, name: str | None) -> None:
        """Make ``name`` the active script; None (SETACTIVE "") deactivates every script."""
        address = _owner(user)
        with self.state.transaction() as conn:
            self._locked(conn, address)
            if name is not None:
                found = conn.execute(
                    "SELECT 1 FROM sieve_scripts WHERE address = %s AND name = %s",
                    (address, name),
                ).fetchone()
                if found is None:
                    raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
            # Two statements: the unique index allows one active row at every instant.
            conn.execute(
                "UPDATE sieve_scripts SET active = false WHERE address = %s AND active"
                " AND name IS DISTINCT FROM %s",
                (address, name),
            )
            if name is not None:
                conn.execute(
                    "UPDATE sieve_scripts SET active = true WHERE address = %s AND name = %s",
                    (address, name),
                )

    def delete(self, user: str, name: str) -> None:
        address = _owner(user)
        with self.state.transaction() as conn:
            self._locked(conn, address)
            row = conn.execute(
                "SELECT active FROM sieve_scripts WHERE address = %s AND name = %s",
                (address, name),
            ).fetchone()
            if row is None:
                raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
            if row[0]:
                raise ScriptError("the active script can't be deleted", "ACTIVE")
            conn.execute(
                "DELETE FROM sieve_scripts WHERE address = %s AND name = %s", (address, name)
            )

    def remove_user(self, user: str) -> None:
        """``ScriptStore.remove_user``: the user's scripts, and whom their vacation answered
        and which failure they were told of, from every node's view at once."""
        address = _owner(user)
        with self.state.transaction() as conn:
            self._locked(conn, address)
            for table in ("sieve_scripts", "sieve_responses", "sieve_notices"):
                conn.execute(f"DELETE FROM {table} WHERE address = %s", (address,))

    def rename(self, user: str, old: str, new: str) -> None:
        """RENAMESCRIPT: the active mark goes with the script (it is the same row)."""
        address = _owner(user)
        check_name(new)
        with self.state.transaction() as conn:
            self._locked(conn, address)
            names = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sieve_scripts WHERE address = %s AND name IN (%s, %s)",
                    (address, old, new),
                )
            }
            if old not in names:
                raise ScriptError(f"no script named {old!r}", "NONEXISTENT")
            if new in names:
                raise ScriptError(f"a script named {new!r} exists", "ALREADYEXISTS")
            conn.execute(
                "UPDATE sieve_scripts SET name = %s, updated = %s WHERE address = %s AND name = %s",
                (new, time.time(), address, old),
            )


class SharedResponseLog:
    """Whom each user's vacation answered, in ``sieve_responses``: one reply per sender per
    period across every node (RFC 5230 4.2, the ``ResponseLog`` of ``vacation.py``)."""

    def __init__(self, state: Any, clock: Any = time) -> None:
        self.state = state
        self._clock = clock

    def claim(self, address: str, sender: str, handle: str, seconds: int) -> bool:
        """True, and ``sender`` not answered again for ``seconds``, if no reply for
        ``handle`` went to ``sender`` within the period (from any node); False if one did.

        One statement: the row is written unless one for the same sender and handle is still
        running; the node whose statement wrote it replies, so two nodes delivering this
        sender's mail at the same moment send one reply."""
        now = self._clock.time()
        seconds = max(MIN_SECONDS, min(MAX_SECONDS, seconds))
        key = response_key(sender, handle)
        rows = self.state.rows(
            "INSERT INTO sieve_responses (address, digest, until) VALUES (%s, %s, %s)"
            " ON CONFLICT (address, digest) DO UPDATE SET until = excluded.until"
            " WHERE sieve_responses.until <= %s RETURNING 1",
            (address, key, now + seconds, now),
        )
        if rows:  # a reply goes out: forget this user's answers whose period is over
            self.state.rows(
                "DELETE FROM sieve_responses WHERE address = %s AND until <= %s", (address, now)
            )
        return bool(rows)


class SharedNotified:
    """Which script failure each user was last told about, in ``sieve_notices`` (the
    ``Notified`` of ``delivery.py``): told once, whichever node meets the failure."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def first(self, address: str, failure: str) -> bool:
        """True (and remembered) the first time ``failure`` is reported for this user."""
        digest = hashlib.sha256(failure.encode("utf-8", "replace")).hexdigest()
        rows = self.state.rows(
            "INSERT INTO sieve_notices (address, digest) VALUES (%s, %s)"
            " ON CONFLICT (address) DO UPDATE SET digest = excluded.digest"
            " WHERE sieve_notices.digest <> excluded.digest RETURNING 1",
            (address, digest),
        )
        return bool(rows)
