"""The Sieve language's grammar (RFC 5228 section 8): text to a tree of commands and tests.

Our own small recursive-descent parser rather than sievelib: sievelib 1.4 keeps its own table
of commands (an extension it doesn't know can't be parsed, and its checks and ours would have
to agree), has no encoded-character (RFC 5228 2.4.2.4), and reports errors as strings without
positions. The grammar is small; what a command means is ``language.py``'s business, not the
parser's.

What it accepts, section by section of RFC 5228:

- 2.3 comments: ``# to end of line`` and ``/* bracketed */`` (not nested);
- 2.4.1 numbers with the K, M, G quantifiers (2^10, 2^20, 2^30), any case;
- 2.4.2 quoted strings (``\\"`` and ``\\\\`` escapes; any other ``\\x`` is ``x``) and
  ``text:`` multi-line strings ending in a line holding a lone ``.``, with dot-stuffing;
- 2.4.2.1 string lists ``["a", "b"]``; 2.6.2 tagged arguments ``:name``;
- 2.5 tests and test lists ``(t1, t2)``; 2.6 commands ending in ``;`` or a block ``{...}``.

Line ends may be CRLF or a bare LF (what editors write; Pigeonhole accepts both). Every error
is a :class:`SieveSyntaxError` with the line it was found on; nothing else escapes, whatever the
input (``tests/sieve/test_grammar_props.py``), and nesting is bounded so a hostile script
can't exhaust the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from txmailhost.asciinum import is_number

MAX_NESTING = 64  # blocks and test lists inside each other

_QUANTIFIERS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"([0-9]+)([KMGkmg]?)")
_SPACE = re.compile(r"[ \t\r\n]+")
_TEXT_START = re.compile(r"text:[ \t]*(#[^\n]*)?\r?\n")


class SieveSyntaxError(ValueError):
    """A script that breaks the grammar or the rules of its commands; ``line`` is 1-based."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.reason = message


@dataclass
class Tag:
    """``:name`` (RFC 5228 2.6.2), kept lower-case: tags are case-insensitive."""

    name: str
    line: int = 0


@dataclass
class StringList:
    """One string or a ``[...]`` list of them; ``single`` when written without brackets."""

    values: list[str]
    single: bool
    line: int = 0


@dataclass
class Number:
    value: int
    line: int = 0


Argument = Tag | StringList | Number


@dataclass
class Test:
    name: str  # lower-case: identifiers are case-insensitive (RFC 5228 2.6)
    arguments: list[Argument]
    tests: list[Test]
    line: int = 0
    checked: dict[str, object] = field(default_factory=dict)  # see Command.checked


@dataclass
class Command:
    name: str
    arguments: list[Argument]
    tests: list[Test]
    block: list[Command] | None  # None: the command ended with ";"
    line: int = 0
    # Filled in by language.validate: the tagged and positional arguments by meaning.
    checked: dict[str, object] = field(default_factory=dict)


class _Reader:
    """The script being read: a position and the line it is on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self._counted = (0, 1)  # (position, its line): lines are counted forward, once

    @property
    def line(self) -> int:
        counted_to, line = self._counted
        if self.pos < counted_to:
            counted_to, line = 0, 1
        line += self.text.count("\n", counted_to, self.pos)
        self._counted = (self.pos, line)
        return line

    def fail(self, message: str) -> SieveSyntaxError:
        return SieveSyntaxError(message, self.line)

    def skip_blank(self) -> None:
        """Skip white space and comments."""
        text = self.text
        while self.pos < len(text):
            space = _SPACE.match(text, self.pos)
            if space:
                self.pos = space.end()
            elif text.startswith("#", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        self.skip_blank()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.text[self.pos : self.pos + 1] or "end of script"
            raise self.fail(f"expected {char!r}, found {found!r}")
        self.pos += 1

    def identifier(self) -> str:
        self.skip_blank()
        found = _IDENTIFIER.match(self.text, self.pos)
        if not found:
            what = self.text[self.pos : self.pos + 1] or "end of script"
            raise self.fail(f"expected a command or test name, found {what!r}")
        self.pos = found.end()
        return found.group().lower()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(f"nested deeper than {MAX_NESTING} levels")


def parse(text: str) -> list[Command]:
    """The commands of a whole script, or :class:`SieveSyntaxError`."""
    reader = _Reader(text)
    commands = _commands(reader, top=True)
    return commands


def _commands(reader: _Reader, top: bool) -> list[Command]:
    commands = []
    while True:
        char = reader.peek()
        if not char:
            if not top:
                raise reader.fail("missing '}' at end of script")
            return commands
        if char == "}":
            if top:
                raise reader.fail("unexpected '}'")
            return commands
        commands.append(_command(reader))


def _command(reader: _Reader) -> Command:
    line = reader.line if reader.peek() else 0
    name = reader.identifier()
    arguments, tests = _arguments(reader)
    char = reader.peek()
    if char == ";":
        reader.pos += 1
        return Command(name, arguments, tests, None, line)
    if char == "{":
        reader.pos += 1
        reader.nest()
        block = _commands(reader, top=False)
        reader.expect("}")
        reader.depth -= 1
        return Command(name, arguments, tests, block, line)
    found = reader.text[reader.pos : reader.pos + 1] or "end of script"
    # Named at the command's line: the next token may be lines further down (or the end).
    raise SieveSyntaxError(f"expected ';' or '{{' after {name}, found {found!r}", line)


def _arguments(reader: _Reader) -> tuple[list[Argument], list[Test]]:
    arguments: list[Argument] = []
    while True:
        char = reader.peek()
        line = reader.line
        if char == ":":
            reader.pos += 1
            found = _IDENTIFIER.match(reader.text, reader.pos)
            if not found:
                raise reader.fail("expected a tag name after ':'")
            reader.pos = found.end()
            arguments.append(Tag(found.group().lower(), line))
        elif is_number(char):
            arguments.append(_number(reader))
        elif char in ('"', "["):
            arguments.append(_string_list(reader))
        elif reader.text.startswith("text:", reader.pos):
            arguments.append(StringList([_multiline(reader)], True, line))
        else:
            break
    tests: list[Test] = []
    if reader.peek() == "(":
        tests = _test_list(reader)
    elif _IDENTIFIER.match(reader.text, reader.pos):
        tests = [_test(reader)]
    return arguments, tests


def _test(reader: _Reader) -> Test:
    reader.peek()
    line = reader.line
    name = reader.identifier()
    reader.nest()
    arguments, tests = _arguments(reader)
    reader.depth -= 1
    return Test(name, arguments, tests, line)


def _test_list(reader: _Reader) -> list[Test]:
    reader.expect("(")
    reader.nest()
    tests = [_test(reader)]
    while reader.peek() == ",":
        reader.pos += 1
        tests.append(_test(reader))
    reader.expect(")")
    reader.depth -= 1
    return tests


def _number(reader: _Reader) -> Number:
    line = reader.line
    found = _NUMBER.match(reader.text, reader.pos)
    assert found is not None  # the caller saw a digit
    reader.pos = found.end()
    digits, quantifier = found.groups()
    if len(digits) > 12:
        raise reader.fail(f"number {digits[:20]} is too large")
    value = int(digits) * _QUANTIFIERS.get(quantifier.upper(), 1)
    if value >= 1 << 63:
        raise reader.fail("number is too large")
    return Number(value, line)


def _string_list(reader: _Reader) -> StringList:
    line = reader.line
    if reader.peek() == '"':
        return StringList([_quoted(reader)], True, line)
    reader.expect("[")
    values = [_string(reader)]
    while reader.peek() == ",":
        reader.pos += 1
        values.append(_string(reader))
    reader.expect("]")
    return StringList(values, False, line)


def _string(reader: _Reader) -> str:
    if reader.peek() == '"':
        return _quoted(reader)
    if reader.text.startswith("text:", reader.pos):
        return _multiline(reader)
    raise reader.fail("expected a string")


def _quoted(reader: _Reader) -> str:
    """RFC 5228 2.4.2: ``\\`` escapes the next character, whatever it is."""
    text = reader.text
    start = reader.pos
    reader.pos += 1
    out: list[str] = []
    while True:
        end = _next_of(text, reader.pos, '"\\')
        if end < 0:
            reader.pos = start
            raise reader.fail("unterminated string")
        out.append(text[reader.pos : end])
        if text[end] == '"':
            reader.pos = end + 1
            return "".join(out)
        if end + 1 >= len(text):
            reader.pos = start
            raise reader.fail("unterminated string")
        out.append(text[end + 1])
        reader.pos = end + 2


def _next_of(text: str, pos: int, chars: str) -> int:
    found = [i for i in (text.find(c, pos) for c in chars) if i >= 0]
    return min(found) if found else -1


def _multiline(reader: _Reader) -> str:
    """``text:`` then lines up to one holding only ``.``; a leading ``..`` stands for ``.``."""
    start_line = reader.line
    found = _TEXT_START.match(reader.text, reader.pos)
    if not found:
        raise reader.fail("text: must be followed by the end of the line")
    reader.pos = found.end()
    lines: list[str] = []
    text = reader.text
    while True:
        end = text.find("\n", reader.pos)
        if end < 0:
            raise SieveSyntaxError("text: string never ends with a '.' line", start_line)
        line = text[reader.pos : end]
        reader.pos = end + 1
        bare = line[:-1] if line.endswith("\r") else line
        if bare == ".":
            return "".join(lines)
        if bare.startswith("."):
            bare = bare[1:]  # dot-stuffing (RFC 5228 2.4.2, like SMTP's)
        lines.append(bare + "\r\n")


# -- printing (for round-trip tests and the vacation script generator) -------------------------


def quote(value: str) -> str:
    """``value`` as a quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_argument(argument: Argument) -> str:
    if isinstance(argument, Tag):
        return ":" + argument.name
    if isinstance(argument, Number):
        return str(argument.value)
    if argument.single:
        return quote(argument.values[0])
    return "[" + ", ".join(quote(v) for v in argument.values) + "]"


def format_test(test: Test) -> str:
    parts = [test.name, *(format_argument(a) for a in test.arguments)]
    if len(test.tests) == 1 and test.name == "not":
        parts.append(format_test(test.tests[0]))
    elif test.tests:
        parts.append("(" + ", ".join(format_test(t) for t in test.tests) + ")")
    return " ".join(parts)


def format_commands(commands: list[Command], indent: str = "") -> str:
    """Sieve text that parses back to ``commands`` (their names, arguments and tests)."""
    out = []
    for command in commands:
        parts = [command.name, *(format_argument(a) for a in command.arguments)]
        if len(command.tests) == 1:
            parts.append(format_test(command.tests[0]))
        elif command.tests:
            parts.append("(" + ", ".join(format_test(t) for t in command.tests) + ")")
        head = indent + " ".join(parts)
        if command.block is None:
            out.append(head + ";\r\n")
        else:
            inner = format_commands(command.block, indent + "  ")
            out.append(head + " {\r\n" + inner + indent + "}\r\n")
    return "".join(out)
