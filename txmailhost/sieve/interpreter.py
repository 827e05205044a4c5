"""Running a checked Sieve script on one message for one recipient: the actions it asks for.

The interpreter only decides; it touches no mailbox and sends nothing. Its :class:`Outcome`
lists the mailboxes the copy goes into, the addresses it is redirected to, a rejection, a
vacation request — the delivery step (``sieve/delivery.py``) carries them out.

Semantics (RFC 5228 section 2.10, 4): every message starts with the *implicit keep* (INBOX);
``fileinto``, ``redirect``, ``discard`` and ``reject`` cancel it, ``:copy`` (RFC 3894) keeps it;
``keep`` and ``fileinto`` of the same mailbox twice store one copy (2.10.3). ``stop`` ends the
script. ``reject``/``ereject`` (RFC 5429) can't be combined with ``keep``, ``fileinto`` or
``vacation`` (2.2): that is a runtime error.

Flags (RFC 5232, ``flags.py``): ``setflag``/``addflag``/``removeflag`` change the *internal
variable* (one per run, shared with included scripts; empty at the start) or, given a name,
that variable (``variables``). ``keep`` and ``fileinto`` store their copy with the flags of
their ``:flags`` argument, else with the internal variable's flags at that moment; the
implicit keep with those it holds when the script ends (RFC 5232 5). A mailbox stored into
twice gets one copy with the flags of the last action, as Pigeonhole does.

Limits (DESIGN invariant 4): ``max_steps`` commands and tests evaluated, ``max_redirects``
redirects per message, ``max_actions`` mailboxes, and the work of ``:matches`` tests
(``matching.MatchBudget``: a long pattern against a long body costs their product). Passing one, or any runtime error, is a
:class:`SieveRuntimeError`: the caller then delivers to INBOX and logs it (RFC 5228 2.10.6:
an error never loses the message).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from txmailhost.sieve import dates
from txmailhost.sieve import flags as _flags
from txmailhost.sieve.grammar import Command, Test
from txmailhost.sieve.language import Script
from txmailhost.sieve.matching import (
    MatchBudget,
    MatchBudgetExhausted,
    Matcher,
    address_part,
    part_of,
)
from txmailhost.sieve.message import MessageView, body_text

INBOX = "INBOX"
MAX_VARIABLE = 4000  # octets a variable holds at most (RFC 5229 6: implementations may limit)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")


class SieveRuntimeError(Exception):
    """The script could not finish; the message goes to INBOX."""


@dataclass
class VacationRequest:
    """What a ``vacation`` command asked for (RFC 5230 4, RFC 6131 :seconds)."""

    reason: str
    seconds: int
    subject: str | None = None
    sender: str | None = None  # :from
    addresses: list[str] = field(default_factory=list)
    mime: bool = False
    handle: str | None = None


@dataclass
class Outcome:
    """The actions of one run, in the order the script gave them."""

    mailboxes: list[tuple[str, bool]] = field(default_factory=list)  # (name, :create)
    flags: dict[str, frozenset[str]] = field(default_factory=dict)  # mailbox -> IMAP flags
    redirects: list[str] = field(default_factory=list)
    reject: str | None = None
    reject_in_smtp: bool = False  # ereject: say it in SMTP when still possible
    vacation: VacationRequest | None = None
    discarded: bool = False
    implicit_keep: bool = True
    explicit_keep: bool = False

    @property
    def targets(self) -> list[tuple[str, bool]]:
        """The mailboxes the copy is stored in, the implicit keep included."""
        found = list(self.mailboxes)
        if self.implicit_keep and (INBOX, False) not in found:
            found.insert(0, (INBOX, False))
        return found


class _Stop(Exception):
    pass


class _Return(Exception):
    """RFC 6609 3.3 ``return``: the current (included) script ends, its includer goes on."""


# Where included scripts come from: (location "personal"/"global", name) -> Script, or None
# when there is no such script.
Loader = Callable[[str, str], "Script | None"]
MAX_INCLUDE_DEPTH = 10  # scripts including each other (RFC 6609 3.2: implementations limit)
MAX_INCLUDES = 50  # include commands run per message


@dataclass
class _Frame:
    """One script being run: its own variables, and the names it declared ``global``."""

    key: tuple[str, str]
    uses_variables: bool
    variables: dict[str, str] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)


class Interpreter:
    """One run of ``script`` on ``message``; ``mailbox_exists`` answers ``mailboxexists``."""

    def __init__(
        self,
        script: Script,
        message: MessageView,
        *,
        mailbox_exists: Callable[[str], bool] = lambda name: name.upper() == INBOX,
        max_steps: int = 10_000,
        max_redirects: int = 4,
        max_actions: int = 32,
        default_vacation_days: int = 7,
        now: datetime.datetime | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.script = script
        self.message = message
        self.mailbox_exists = mailbox_exists
        self.max_steps = max_steps
        self.max_redirects = max_redirects
        self.max_actions = max_actions
        self.default_vacation_days = default_vacation_days
        self.now = now if now is not None else datetime.datetime.now(datetime.UTC)
        self.loader = loader
        self.global_variables: dict[str, str] = {}  # RFC 6609 3.4, shared by every script
        self.internal_flags = ""  # RFC 5232 3: the variable flag actions without a name use
        self.matched: list[str] = []
        self.steps = 0
        self.match_budget = MatchBudget()
        self.outcome = Outcome()
        self._frames: list[_Frame] = []
        self._included: set[tuple[str, str]] = set()  # for :once
        self._includes = 0

    def run(self) -> Outcome:
        try:
            self._run_script(self.script, ("personal", ""))
        except _Stop:
            pass
        except RecursionError:
            raise SieveRuntimeError("script nested too deeply") from None
        outcome = self.outcome
        if outcome.implicit_keep and not any(name == INBOX for name, _c in outcome.mailboxes):
            keep_flags = _flags.for_store(_flags.parse([self.internal_flags]))
            if keep_flags:
                outcome.flags[INBOX] = keep_flags  # RFC 5232 5: the flags at the end
        return outcome

    def _run_script(self, script: Script, key: tuple[str, str]) -> None:
        self._frames.append(_Frame(key, "variables" in script.required))
        try:
            self._block(script.commands)
        except _Return:
            pass
        finally:
            self._frames.pop()

    # -- commands ------------------------------------------------------------------------------

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise SieveRuntimeError(f"more than {self.max_steps} steps")

    def _block(self, commands: list[Command]) -> None:
        done = False  # an if/elsif in this chain has run its block
        for command in commands:
            self._step()
            name = command.name
            if name == "if":
                done = self._branch(command)
            elif name == "elsif":
                if not done:
                    done = self._branch(command)
            elif name == "else":
                if not done:
                    assert command.block is not None
                    self._block(command.block)
                done = True
            else:
                done = False
                self._action(command)

    def _branch(self, command: Command) -> bool:
        if self._test(command.tests[0]):
            assert command.block is not None
            self._block(command.block)
            return True
        return False

    def _action(self, command: Command) -> None:
        checked = command.checked
        positional = checked["positional"]
        assert isinstance(positional, list)
        name = command.name
        outcome = self.outcome
        if name == "require":
            return
        if name == "stop":
            raise _Stop
        if name == "keep":
            outcome.explicit_keep = True
            self._store(INBOX, False, self._flags_of(checked))
            self._no_reject_with("keep")
        elif name == "discard":
            outcome.implicit_keep = False
            outcome.discarded = True
        elif name == "fileinto":
            mailbox = self._expand(positional[0])
            self._store(mailbox, bool(checked.get(":create")), self._flags_of(checked))
            if not checked.get(":copy"):
                outcome.implicit_keep = False
            self._no_reject_with("fileinto")
        elif name == "redirect":
            address = self._expand(positional[0]).strip()
            if "@" not in address or any(c in address for c in "\r\n<>, "):
                raise SieveRuntimeError(f"redirect: {address!r} is not an address")
            # The same address twice is one redirect (RFC 5228 2.10.3); the local part is
            # case-sensitive (RFC 5321 2.4), the domain is not.
            local, _, domain = address.rpartition("@")
            address = f"{local}@{domain.lower()}"
            if address not in outcome.redirects:
                if len(outcome.redirects) >= self.max_redirects:
                    raise SieveRuntimeError(f"more than {self.max_redirects} redirects")
                outcome.redirects.append(address)
            if not checked.get(":copy"):
                outcome.implicit_keep = False
        elif name in ("reject", "ereject"):
            if outcome.explicit_keep or outcome.mailboxes or outcome.vacation:
                raise SieveRuntimeError(f"{name} can't be combined with keep, fileinto or vacation")
            outcome.reject = self._expand(positional[0])
            outcome.reject_in_smtp = name == "ereject"
            outcome.implicit_keep = False
        elif name == "set":
            self._set(checked, positional)
        elif name in ("setflag", "addflag", "removeflag"):
            self._flag_action(name, positional)
        elif name == "include":
            self._include(checked, positional)
        elif name == "return":
            raise _Return
        elif name == "global":
            for variable in positional[0]:
                self._frames[-1].globals.add(self._expand(variable).lower())
        elif name == "vacation":
            self._vacation(checked, positional)
        else:  # language.validate lets nothing else through
            raise SieveRuntimeError(f"command {name} is not implemented")

    def _store(self, mailbox: str, create: bool, flags: frozenset[str] = frozenset()) -> None:
        outcome = self.outcome
        if mailbox.upper() == INBOX:
            mailbox = INBOX
        if not any(name == mailbox for name, _create in outcome.mailboxes):
            if len(outcome.mailboxes) >= self.max_actions:
                raise SieveRuntimeError(f"more than {self.max_actions} mailboxes")
            outcome.mailboxes.append((mailbox, create))
        # One copy per mailbox (RFC 5228 2.10.3); its flags are the last action's.
        if flags:
            outcome.flags[mailbox] = flags
        else:
            outcome.flags.pop(mailbox, None)

    def _flags_of(self, checked: dict) -> frozenset[str]:
        """The flags a ``keep``/``fileinto`` stores with: ``:flags``, else the internal
        variable's (RFC 5232 5)."""
        if ":flags" in checked:
            given = [self._expand(f) for f in checked[":flags"]]
        else:
            given = [self.internal_flags]
        return _flags.for_store(_flags.parse(given))

    def _flag_action(self, name: str, positional: list) -> None:
        """RFC 5232 3.1-3.3, on the named variable or the internal one."""
        given = [self._expand(f) for f in positional[-1]]
        variable = self._expand(positional[0]).lower() if len(positional) > 1 else None
        if variable is None:
            current = self.internal_flags
        else:
            current = self._variables_for(variable).get(variable, "")
        if name == "setflag":
            value = _flags.add("", given)
        elif name == "addflag":
            value = _flags.add(current, given)
        else:
            value = _flags.remove(current, given)
        if variable is None:
            self.internal_flags = value[:MAX_VARIABLE]
        else:
            self._variables_for(variable)[variable] = value[:MAX_VARIABLE]

    def _no_reject_with(self, name: str) -> None:
        if self.outcome.reject is not None:
            raise SieveRuntimeError(f"{name} can't follow reject")

    def _set(self, checked: dict, positional: list) -> None:
        value = self._expand(positional[1])
        # RFC 5229 4.1: by precedence, :lower/:upper first, :length last.
        if checked.get(":lower"):
            value = value.lower()
        if checked.get(":upper"):
            value = value.upper()
        if checked.get(":lowerfirst"):
            value = value[:1].lower() + value[1:]
        if checked.get(":upperfirst"):
            value = value[:1].upper() + value[1:]
        if checked.get(":quotewildcard"):
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if checked.get(":length"):
            value = str(len(value))
        self._variables_for(positional[0].lower())[positional[0].lower()] = value[:MAX_VARIABLE]

    def _variables_for(self, name: str) -> dict[str, str]:
        frame = self._frames[-1]
        return self.global_variables if name in frame.globals else frame.variables

    def _include(self, checked: dict, positional: list) -> None:
        """RFC 6609 3.2: run another of the user's scripts, or a global one, here."""
        location = "global" if checked.get(":global") else "personal"
        name = self._expand(positional[0])
        key = (location, name)
        if checked.get(":once") and key in self._included:
            return
        if any(frame.key == key for frame in self._frames):
            raise SieveRuntimeError(f"include of {location} script {name!r} is recursive")
        if len(self._frames) >= MAX_INCLUDE_DEPTH:
            raise SieveRuntimeError(f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
        self._includes += 1
        if self._includes > MAX_INCLUDES:
            raise SieveRuntimeError(f"more than {MAX_INCLUDES} includes")
        script = self.loader(location, name) if self.loader is not None else None
        if script is None:
            if checked.get(":optional"):
                return
            raise SieveRuntimeError(f"include: no {location} script {name!r}")
        self._included.add(key)
        self._run_script(script, key)

    def _vacation(self, checked: dict, positional: list) -> None:
        if self.outcome.reject is not None:
            raise SieveRuntimeError("vacation can't be combined with reject")
        if self.outcome.vacation is not None:
            raise SieveRuntimeError("only one vacation per script run (RFC 5230 4.7)")
        if ":seconds" in checked:
            seconds = int(checked[":seconds"])  # type: ignore[arg-type]
        else:
            seconds = int(checked.get(":days", self.default_vacation_days)) * 86400  # type: ignore[arg-type]

        def text(tag: str) -> str | None:
            value = checked.get(tag)
            return None if value is None else self._expand(str(value))

        self.outcome.vacation = VacationRequest(
            reason=self._expand(positional[0]),
            seconds=seconds,
            subject=text(":subject"),
            sender=text(":from"),
            addresses=[self._expand(a) for a in checked.get(":addresses", [])],  # type: ignore[attr-defined]
            mime=bool(checked.get(":mime")),
            handle=text(":handle"),
        )

    # -- tests ---------------------------------------------------------------------------------

    def _test(self, test: Test) -> bool:
        self._step()
        name = test.name
        checked = test.checked
        positional = checked["positional"]
        assert isinstance(positional, list)
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self._test(test.tests[0])
        if name == "allof":
            return all(self._test(t) for t in test.tests)
        if name == "anyof":
            return any(self._test(t) for t in test.tests)
        if name == "exists":
            return all(self.message.exists(self._expand(h)) for h in positional[0])
        if name == "size":
            limit = positional[0]
            return self.message.size > limit if checked.get(":over") else self.message.size < limit
        if name == "mailboxexists":
            return all(self.mailbox_exists(self._expand(m)) for m in positional[0])
        matcher = Matcher.from_checked(checked)
        last = positional[-1]  # a string list, or one string (spamtest, virustest)
        keys = [self._expand(k) for k in ([last] if isinstance(last, str) else last)]
        if name == "header":
            values = [
                v
                for h in positional[0]
                for v in _indexed(self.message.values(self._expand(h)), checked)
            ]
        elif name == "address":
            part = part_of(checked)
            addresses = [
                a
                for h in positional[0]
                for field in _indexed(self.message.address_fields(self._expand(h)), checked)
                for a in field
            ]
            values = [p for p in (address_part(a, part) for a in addresses) if p is not None]
        elif name == "envelope":
            values = self._envelope(positional[0], part_of(checked))
        elif name == "body":
            transform = (
                "raw" if checked.get(":raw") else "content" if ":content" in checked else "text"
            )
            types = checked.get(":content")
            if transform == "raw":
                values = [self.message.raw_body()]
            else:
                values = body_text(self.message.body(), transform, types)  # type: ignore[arg-type]
        elif name == "date":
            values = self._dates(checked, positional)
        elif name == "spamtest":
            value = spam_value(
                self.message.values_on_top("x-spam-status"), bool(checked.get(":percent"))
            )
            values = [] if value is None else [value]
        elif name == "virustest":
            values = [virus_value(self.message.values_on_top("x-virus-scanned"))]
        elif name == "currentdate":
            moment = dates.in_zone(self.now, checked.get(":zone"), False)  # type: ignore[arg-type]
            values = [] if moment is None else [dates.part(moment, positional[0])]
        elif name == "string":
            values = [self._expand(s) for s in positional[0]]
            if matcher.match == "count":
                values = [v for v in values if v]
        elif name == "hasflag":
            # RFC 5232 4: each flag of the variables (the internal one without names) against
            # the keys; :count counts the flags of all the variables. Keys of :is and
            # :contains are flag lists (RFC 5232 2: split on spaces, "" is no flag); those of
            # :matches and :value are patterns and values, compared whole (as in Pigeonhole).
            if len(positional) > 1:
                names = [self._expand(v).lower() for v in positional[0]]
                held = [self._variables_for(n).get(n, "") for n in names]
            else:
                held = [self.internal_flags]
            values = _flags.split(held) if matcher.match != "count" else _all_flags(held)
            if matcher.match in ("is", "contains"):
                keys = _flags.split(keys)
        else:
            raise SieveRuntimeError(f"test {name} is not implemented")
        try:
            found, matched = matcher.test(values, keys, self.match_budget)
        except MatchBudgetExhausted as e:
            raise SieveRuntimeError(str(e)) from None
        if found and matched is not None and matcher.match == "matches":
            self.matched = matched
        return found

    def _dates(self, checked: dict, positional: list) -> list[str]:
        """RFC 5260 4: the date-part of each date in the named header field."""
        found = []
        field = self._expand(positional[0])
        for value in _indexed(self.message.values(field), checked):
            if field.lower() == "received":
                value = value.rpartition(";")[2]  # RFC 5260 4: the date after the last ";"
            moment = dates.header_date(value)
            if moment is not None:
                zone = checked.get(":zone")
                moment = dates.in_zone(moment, zone, bool(checked.get(":originalzone")))
            if moment is not None:
                found.append(dates.part(moment, positional[1]))
        return found

    def _envelope(self, parts: list[str], part: str) -> list[str]:
        values = []
        for name in parts:
            name = name.lower()
            address = self.message.sender or "" if name == "from" else self.message.recipient
            if address == "" and part != "all":
                continue  # the null sender has no local part or domain (RFC 5228 5.4)
            value = address_part(address, part) if address else ""
            if value is not None:
                values.append(value)
        return values

    # -- variables -----------------------------------------------------------------------------

    def _expand(self, value: str) -> str:
        """Substitute ``${name}`` and ``${N}`` when the script requires "variables"."""
        if not self._frames[-1].uses_variables or "${" not in value:
            return value

        def substitute(found: re.Match[str]) -> str:
            name = found.group(1)
            if name.isdigit():
                index = int(name)
                return self.matched[index] if index < len(self.matched) else ""
            return self._variables_for(name.lower()).get(name.lower(), "")

        return _VARIABLE.sub(substitute, value)[: MAX_VARIABLE * 4]


def _all_flags(held: list[str]) -> list[str]:
    """Every flag of each variable, for ``hasflag :count`` (a flag in two variables counts
    twice: RFC 5232 4 counts the flags of all the variables together)."""
    return [flag for text in held for flag in _flags.split([text])]


def _indexed(fields: list, checked: dict) -> list:
    """RFC 5260 6: with ``:index N`` only the Nth field (from the bottom with ``:last``)."""
    index = checked.get(":index")
    if index is None:
        return fields
    position = len(fields) - index if checked.get(":last") else index - 1
    return [fields[position]] if 0 <= position < len(fields) else []


_SCORE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)\s+required=(-?\d+(?:\.\d+)?)")


def spam_value(statuses: list[str], percent: bool) -> str | None:
    """RFC 5235 3.2/3.3 from our spam filter's ``X-Spam-Status: Yes|No, score=S required=J``
    (the topmost of those above our Received:, ``MessageView.values_on_top``: ours; a
    sender's, below it, is never read). "0" when the message wasn't
    scored; else 1 (surely not spam) to 10 (surely spam), the threshold J at 6. With
    ``:percent`` 0 to 100, the threshold at 50, and no value at all for a message that
    wasn't scored (0 would say "surely not spam")."""
    found = _SCORE.search(statuses[0]) if statuses else None
    if found is None:
        return None if percent else "0"
    score, required = float(found.group(1)), float(found.group(2))
    ratio = max(0.0, score) / required if required > 0 else (1.0 if score > 0 else 0.0)
    if percent:
        return str(min(100, round(ratio * 50)))
    return str(min(10, 1 + int(ratio * 5)))


def virus_value(scanned: list[str]) -> str:
    """RFC 5235 3.4: "0" not scanned (or the scanner was unavailable), "1" scanned and clean —
    the only verdict a delivered message can have, since the clamd filter refuses infected
    mail (550) before it is ever stored."""
    if scanned and scanned[0].strip().lower().startswith("clamd on "):
        return "1"
    return "0"
