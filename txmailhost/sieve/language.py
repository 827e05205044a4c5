"""What each Sieve command and test takes, and the check of a parsed script against it.

The grammar (``grammar.py``) knows only shapes; this module knows meanings: which commands
and tests exist, which extension (``require``) each needs, which tagged arguments each takes
and whether they exclude each other (a match type, an address part, a comparator: RFC 5228
2.7), which positional arguments follow, and where ``elsif``/``else`` may stand. A script
that passes :func:`validate` can be run without argument errors: every command and test then
carries its arguments by meaning in ``checked`` (``{":days": 7, "positional": [...]}``).

PUTSCRIPT and CHECKSCRIPT (ManageSieve) and delivery use the same check, so a script the
server accepted over ManageSieve never fails at delivery for a reason it could have named.

Extensions (the ``SIEVE`` capability): see :data:`EXTENSIONS` and docs/sieve.rst.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from txmailhost.sieve.dates import DATE_PARTS, zone_of
from txmailhost.sieve.grammar import (
    Command,
    Number,
    SieveSyntaxError,
    StringList,
    Tag,
    Test,
    parse,
)

EXTENSIONS = (
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "vacation",
    "vacation-seconds",
    "variables",
    "body",
    "relational",
    "subaddress",
    "copy",
    "mailbox",
    "comparator-i;ascii-numeric",
    "date",
    "include",
    "index",
    "spamtest",
    "spamtestplus",
    "virustest",
    "imap4flags",
)
COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")

# Tag groups: at most one tag of a group per command or test (RFC 5228 2.7.1-2.7.4).
MATCH_TYPE = "match-type"
ADDRESS_PART = "address-part"
COMPARATOR = "comparator"

# What a tag takes after it: nothing, a string, a string list or a number.
NONE, STRING, STRINGS, NUMBER = "none", "string", "strings", "number"


@dataclass(frozen=True)
class TagSpec:
    group: str | None  # tags sharing a group exclude each other
    value: str = NONE
    extension: str | None = None  # the capability that must be required to use it


@dataclass(frozen=True)
class Spec:
    """One command or test: its tags, positional arguments (kinds) and what follows."""

    positional: tuple[str, ...] = ()
    tags: dict[str, TagSpec] = field(default_factory=dict)
    extension: str | None = None
    tests: str = "none"  # "none", "one" (if, not) or "list" (allof, anyof)
    block: bool = False
    # The kind of an optional positional argument before the others (imap4flags' variable
    # name or names, RFC 5232 3 and 4); it needs "variables".
    optional: str | None = None


_MATCH = {
    ":is": TagSpec(MATCH_TYPE),
    ":contains": TagSpec(MATCH_TYPE),
    ":matches": TagSpec(MATCH_TYPE),
    ":count": TagSpec(MATCH_TYPE, STRING, "relational"),
    ":value": TagSpec(MATCH_TYPE, STRING, "relational"),
    ":comparator": TagSpec(COMPARATOR, STRING),
}
_ADDRESS = {
    ":all": TagSpec(ADDRESS_PART),
    ":localpart": TagSpec(ADDRESS_PART),
    ":domain": TagSpec(ADDRESS_PART),
    ":user": TagSpec(ADDRESS_PART, extension="subaddress"),
    ":detail": TagSpec(ADDRESS_PART, extension="subaddress"),
}
_COPY = {":copy": TagSpec("copy", extension="copy")}
_INDEX = {  # RFC 5260 6: one occurrence of the field, counted from the top (or the bottom)
    ":index": TagSpec("index", NUMBER, "index"),
    ":last": TagSpec("last", extension="index"),
}
_FLAGS = {":flags": TagSpec("flags", STRINGS, "imap4flags")}  # RFC 5232 5
# RFC 5232 3: setflag/addflag/removeflag [<variablename: string>] <list-of-flags: string-list>
_FLAG_ACTION = Spec((STRINGS,), extension="imap4flags", optional=STRING)

COMMANDS: dict[str, Spec] = {
    "require": Spec((STRINGS,)),
    "if": Spec(tests="one", block=True),
    "elsif": Spec(tests="one", block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec(tags=_FLAGS),
    "discard": Spec(),
    "redirect": Spec((STRING,), tags=_COPY),
    "fileinto": Spec(
        (STRING,),
        tags={**_COPY, **_FLAGS, ":create": TagSpec("create", extension="mailbox")},
        extension="fileinto",
    ),
    "setflag": _FLAG_ACTION,
    "addflag": _FLAG_ACTION,
    "removeflag": _FLAG_ACTION,
    "reject": Spec((STRING,), extension="reject"),
    "ereject": Spec((STRING,), extension="ereject"),
    "set": Spec(
        (STRING, STRING),
        tags={
            f":{m}": TagSpec(g)
            for g, names in (
                ("case", ("lower", "upper")),
                ("first", ("lowerfirst", "upperfirst")),
                ("quote", ("quotewildcard",)),
                ("length", ("length",)),
            )
            for m in names
        },
        extension="variables",
    ),
    "include": Spec(
        (STRING,),
        tags={
            ":personal": TagSpec("location"),
            ":global": TagSpec("location"),
            ":once": TagSpec("once"),
            ":optional": TagSpec("optional"),
        },
        extension="include",
    ),
    "return": Spec(extension="include"),
    "global": Spec((STRINGS,), extension="include"),
    "vacation": Spec(
        (STRING,),
        tags={
            ":days": TagSpec("period", NUMBER),
            ":seconds": TagSpec("period", NUMBER, "vacation-seconds"),
            ":subject": TagSpec("subject", STRING),
            ":from": TagSpec("from", STRING),
            ":addresses": TagSpec("addresses", STRINGS),
            ":mime": TagSpec("mime"),
            ":handle": TagSpec("handle", STRING),
        },
        extension="vacation",
    ),
}

TESTS: dict[str, Spec] = {
    "true": Spec(),
    "false": Spec(),
    "not": Spec(tests="one"),
    "allof": Spec(tests="list"),
    "anyof": Spec(tests="list"),
    "exists": Spec((STRINGS,)),
    "size": Spec((NUMBER,), tags={":over": TagSpec("size"), ":under": TagSpec("size")}),
    "header": Spec((STRINGS, STRINGS), tags={**_MATCH, **_INDEX}),
    "address": Spec((STRINGS, STRINGS), tags={**_MATCH, **_ADDRESS, **_INDEX}),
    "envelope": Spec((STRINGS, STRINGS), tags={**_MATCH, **_ADDRESS}, extension="envelope"),
    "body": Spec(
        (STRINGS,),
        tags={
            **_MATCH,
            ":raw": TagSpec("transform"),
            ":text": TagSpec("transform"),
            ":content": TagSpec("transform", STRINGS),
        },
        extension="body",
    ),
    "string": Spec((STRINGS, STRINGS), tags=_MATCH, extension="variables"),
    "mailboxexists": Spec((STRINGS,), extension="mailbox"),
    "date": Spec(
        (STRING, STRING, STRINGS),
        tags={
            **_MATCH,
            **_INDEX,
            ":zone": TagSpec("zone", STRING),
            ":originalzone": TagSpec("zone"),
        },
        extension="date",
    ),
    # RFC 5235, read from the verdicts of our spam and clamd filters (interpreter.py)
    "spamtest": Spec(
        (STRING,),
        tags={**_MATCH, ":percent": TagSpec("percent", NONE, "spamtestplus")},
        extension="spamtest",
    ),
    "virustest": Spec((STRING,), tags=_MATCH, extension="virustest"),
    # RFC 5232 4: hasflag [MATCH-TYPE] [COMPARATOR] [<variable-list>] <list-of-flags>
    "hasflag": Spec((STRINGS,), tags=_MATCH, extension="imap4flags", optional=STRINGS),
    "currentdate": Spec(
        (STRING, STRINGS), tags={**_MATCH, ":zone": TagSpec("zone", STRING)}, extension="date"
    ),
}

_NO_TAG = TagSpec(None)
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENCODED = re.compile(r"\$\{(hex|unicode):([^}]*)\}", re.IGNORECASE)


@dataclass
class Script:
    """A checked script: its commands and the extensions it requires."""

    commands: list[Command]
    required: frozenset[str]


def compile_script(text: str, max_size: int | None = None) -> Script:
    """Parse and check ``text``; :class:`SieveSyntaxError` names the first problem."""
    if max_size is not None and len(text.encode("utf-8", "surrogatepass")) > max_size:
        raise SieveSyntaxError(f"script is larger than {max_size} octets")
    commands = parse(text)
    required: set[str] = set()
    _validate_block(commands, required, top=True)
    return Script(commands, frozenset(required))


def _validate_block(commands: list[Command], required: set[str], top: bool) -> None:
    previous: str | None = None
    requires_allowed = top
    for command in commands:
        name = command.name
        if name == "require":
            if not requires_allowed:
                raise SieveSyntaxError("require must come before other commands", command.line)
            _check(command, COMMANDS["require"], required, "command")
            for capability in command.checked["positional"][0]:  # type: ignore[index]
                capability = capability.lower()
                if capability.startswith("comparator-") and capability[11:] in COMPARATORS:
                    required.add(capability)
                elif capability not in EXTENSIONS:
                    raise SieveSyntaxError(f"unsupported extension {capability!r}", command.line)
                required.add(capability)
                if capability == "spamtestplus":
                    required.add("spamtest")  # RFC 5235 3.2: it extends spamtest
            previous = name
            continue
        requires_allowed = False
        spec = COMMANDS.get(name)
        if spec is None:
            raise SieveSyntaxError(f"unknown command {name!r}", command.line)
        if name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise SieveSyntaxError(f"{name} without a preceding if", command.line)
        _check(command, spec, required, "command")
        if command.block is not None:
            _validate_block(command.block, required, top=False)
        previous = name


def _check(node: Command | Test, spec: Spec, required: set[str], kind: str) -> None:
    """Fill ``node.checked`` from its arguments, or raise naming what is wrong."""
    name = node.name
    if spec.extension and spec.extension not in required:
        raise SieveSyntaxError(f"{name} needs require {spec.extension!r}", node.line)
    checked: dict[str, object] = {}
    groups: dict[str, str] = {}
    positional: list[object] = []
    arguments = list(node.arguments)
    wanted = list(spec.positional)
    if spec.optional is not None:
        given = sum(not isinstance(a, Tag) for a in arguments) - sum(
            isinstance(a, Tag) and spec.tags.get(":" + a.name, _NO_TAG).value != NONE
            for a in arguments
        )
        if given > len(wanted):
            wanted.insert(0, spec.optional)
    i = 0
    while i < len(arguments):
        argument = arguments[i]
        i += 1
        if isinstance(argument, Tag):
            tag = ":" + argument.name
            tag_spec = spec.tags.get(tag)
            if tag_spec is None:
                raise SieveSyntaxError(f"{name} takes no {tag} argument", argument.line)
            if tag_spec.extension and tag_spec.extension not in required:
                raise SieveSyntaxError(f"{tag} needs require {tag_spec.extension!r}", argument.line)
            if tag_spec.group is not None:
                if tag_spec.group in groups:
                    raise SieveSyntaxError(
                        f"{name}: {tag} conflicts with {groups[tag_spec.group]}", argument.line
                    )
                groups[tag_spec.group] = tag
            if tag_spec.value == NONE:
                checked[tag] = True
                continue
            if i >= len(arguments):
                raise SieveSyntaxError(f"{tag} needs a value", argument.line)
            checked[tag] = _value(arguments[i], tag_spec.value, f"{name} {tag}")
            i += 1
            continue
        if tag_spec_after := [a for a in arguments[i:] if isinstance(a, Tag)]:
            raise SieveSyntaxError(
                f"{name}: tagged argument :{tag_spec_after[0].name} after a positional one",
                argument.line,
            )
        if len(positional) >= len(wanted):
            raise SieveSyntaxError(f"{name}: too many arguments", argument.line)
        positional.append(_value(argument, wanted[len(positional)], name))
    if len(positional) < len(wanted):
        raise SieveSyntaxError(f"{name}: missing arguments", node.line)
    checked["positional"] = positional
    _check_tests(node, spec, required)
    if isinstance(node, Command):
        if spec.block and node.block is None:
            raise SieveSyntaxError(f"{name} needs a block {{ ... }}", node.line)
        if not spec.block and node.block is not None:
            raise SieveSyntaxError(f"{name} takes no block", node.line)
    _check_comparator(name, checked, required, node.line)
    _check_specifics(name, checked, required, node.line)
    node.checked = checked


def _check_tests(node: Command | Test, spec: Spec, required: set[str]) -> None:
    count = len(node.tests)
    if spec.tests == "none" and count:
        raise SieveSyntaxError(f"{node.name} takes no test", node.line)
    if spec.tests == "one" and count != 1:
        raise SieveSyntaxError(f"{node.name} needs exactly one test", node.line)
    if spec.tests == "list" and count == 0:
        raise SieveSyntaxError(f"{node.name} needs a list of tests", node.line)
    for test in node.tests:
        test_spec = TESTS.get(test.name)
        if test_spec is None:
            raise SieveSyntaxError(f"unknown test {test.name!r}", test.line)
        _check(test, test_spec, required, "test")


def _value(argument: object, kind: str, where: str) -> object:
    if kind == NUMBER:
        if not isinstance(argument, Number):
            raise SieveSyntaxError(f"{where}: expected a number", getattr(argument, "line", 0))
        return argument.value
    if not isinstance(argument, StringList):
        raise SieveSyntaxError(f"{where}: expected a string", getattr(argument, "line", 0))
    if kind == STRING:
        if not argument.single:
            raise SieveSyntaxError(f"{where}: expected one string, not a list", argument.line)
        return argument.values[0]
    return list(argument.values)


def _check_comparator(name: str, checked: dict, required: set[str], line: int) -> None:
    comparator = checked.get(":comparator")
    if comparator is None:
        return
    assert isinstance(comparator, str)
    comparator = comparator.lower()
    if comparator not in COMPARATORS:
        raise SieveSyntaxError(f"{name}: unknown comparator {comparator!r}", line)
    if comparator == "i;ascii-numeric":
        if "comparator-i;ascii-numeric" not in required:
            raise SieveSyntaxError(
                "i;ascii-numeric needs require 'comparator-i;ascii-numeric'", line
            )
        if checked.get(":contains") or checked.get(":matches"):
            raise SieveSyntaxError("i;ascii-numeric allows :is, :count and :value only", line)
    checked[":comparator"] = comparator


def _check_specifics(name: str, checked: dict, required: set[str], line: int) -> None:
    for tag in (":count", ":value"):
        relation = checked.get(tag)
        if relation is not None:
            assert isinstance(relation, str)
            if relation.lower() not in RELATIONS:
                raise SieveSyntaxError(f"{tag}: unknown relation {relation!r}", line)
            checked[tag] = relation.lower()
    if checked.get(":last") and ":index" not in checked:
        raise SieveSyntaxError(f"{name}: :last needs :index", line)
    if checked.get(":index") == 0:
        raise SieveSyntaxError(f"{name}: :index counts from 1", line)
    if name == "size" and not (checked.get(":over") or checked.get(":under")):
        raise SieveSyntaxError("size needs :over or :under", line)
    if name == "envelope":
        for part in checked["positional"][0]:
            if part.lower() not in ("from", "to"):
                raise SieveSyntaxError(f"envelope: unknown envelope part {part!r}", line)
    if name in ("date", "currentdate"):
        date_part = checked["positional"][-2].lower()
        if date_part not in DATE_PARTS:
            raise SieveSyntaxError(f"{name}: unknown date-part {date_part!r}", line)
        checked["positional"][-2] = date_part
        zone = checked.get(":zone")
        if isinstance(zone, str) and zone_of(zone) is None:
            raise SieveSyntaxError(f"{name}: {zone!r} is not a time zone (+hhmm)", line)
    if name == "include":
        included = checked["positional"][0]
        if "/" in included or not included:
            raise SieveSyntaxError(f"include: {included!r} is not a script name", line)
    if name == "global":
        if "variables" not in required:
            raise SieveSyntaxError("global needs require 'variables'", line)
        for variable in checked["positional"][0]:
            if not _VARIABLE_NAME.match(variable):
                raise SieveSyntaxError(f"global: {variable!r} is not a variable name", line)
    if name == "set":
        variable = checked["positional"][0]
        if not _VARIABLE_NAME.match(variable):
            raise SieveSyntaxError(f"set: {variable!r} is not a variable name", line)
    if name in ("setflag", "addflag", "removeflag", "hasflag") and len(checked["positional"]) > 1:
        # RFC 5232 3, 4: the variable name(s) only with "variables" (as Pigeonhole checks)
        if "variables" not in required:
            raise SieveSyntaxError(f"{name}: a variable name needs require 'variables'", line)
        names = checked["positional"][0]
        for variable in [names] if isinstance(names, str) else names:
            if not _VARIABLE_NAME.match(variable):
                raise SieveSyntaxError(f"{name}: {variable!r} is not a variable name", line)
    if name == "vacation":
        for tag in (":days", ":seconds"):
            if tag in checked and not isinstance(checked[tag], int):
                raise SieveSyntaxError(f"vacation {tag} needs a number", line)
    if "encoded-character" in required:
        for key, value in list(checked.items()):
            checked[key] = _decode_encoded(value, line)


def _decode_encoded(value: object, line: int) -> object:
    """RFC 5228 2.4.2.4: ``${hex:41 42}`` and ``${unicode:263a}`` in string arguments."""
    if isinstance(value, str):
        return _ENCODED.sub(lambda m: _encoded_text(m, line), value)
    if isinstance(value, list):
        return [_decode_encoded(v, line) for v in value]
    return value


def _encoded_text(found: re.Match[str], line: int) -> str:
    kind, data = found.group(1).lower(), found.group(2).split()
    if not data or not all(re.fullmatch(r"[0-9A-Fa-f]+", d) for d in data):
        return found.group(0)  # not an encoding: left as written (RFC 5228 2.4.2.4)
    if kind == "hex":
        if any(len(d) > 2 for d in data):
            return found.group(0)
        try:
            return bytes(int(d, 16) for d in data).decode("utf-8")
        except UnicodeDecodeError:
            raise SieveSyntaxError("${hex:...} is not valid UTF-8", line) from None
    points = [int(d, 16) for d in data]
    if any(p > 0x10FFFF or 0xD800 <= p <= 0xDFFF for p in points):
        raise SieveSyntaxError("${unicode:...} names an invalid code point", line)
    return "".join(chr(p) for p in points)
