"""Property tests of the MIME splitter and BODYSTRUCTURE/ENVELOPE (mime.py): any bytes give a
structure and well-formed IMAP data, never an exception; a message built from a known tree is
split back into exactly that tree and those bytes; hostile shapes cost bounded time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.wire import imap_values
from txmailhost.imap import mime

pytestmark = pytest.mark.fuzz

_HEADER_NAMES = [
    b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition", b"Content-Language",
    b"Content-ID", b"Content-Location", b"From", b"To", b"Cc", b"Subject", b"Date", b"Sender",
]  # fmt: skip
_VALUES = [
    b"multipart/mixed; boundary=b", b'multipart/alternative; boundary="b;c"', b"message/rfc822",
    b"text/plain;", b"text/html; charset=\"utf-8\"", b"multipart/digest; boundary=b", b"base64",
    b"attachment; filename=\"a b.pdf\"", b"en, de", b'"A, B" <a@b.example>, c@d', b"(((",
    b"undisclosed-recipients:;", b"=?utf-8?q?caf=C3=A9?=", b"\xff\xfe",
]  # fmt: skip
_LINES = [b"--b", b"--b--", b"--b ", b"--bb", b"", b".", b"x"]

header_fields = st.builds(
    lambda n, v: n + b": " + v,
    st.sampled_from(_HEADER_NAMES),
    st.one_of(st.sampled_from(_VALUES), st.binary(max_size=30)),
)
lines = st.one_of(header_fields, st.sampled_from(_LINES), st.binary(max_size=20))
messages = st.one_of(
    st.lists(lines, max_size=30).map(b"\r\n".join),
    st.binary(max_size=400),
)


def _parts(part: mime.Part):
    yield part
    for child in part.children:
        yield from _parts(child)
    if part.message is not None:
        yield from _parts(part.message)


@given(messages)
def test_any_message_has_a_structure_and_well_formed_bodystructure(raw):
    root = mime.parse(raw)
    for part in _parts(root):
        assert 0 <= part.start <= part.body_start <= part.end <= len(raw)
    for extensible in (True, False):
        (structure,) = imap_values(mime.bodystructure(root, extensible))
        assert isinstance(structure, list)
    (envelope,) = imap_values(mime.envelope(root.fields))
    assert len(envelope) == 10


@given(messages, st.lists(st.integers(0, 4), max_size=4))
def test_any_section_number_finds_a_part_or_none(raw, path):
    part = mime.find_part(mime.parse(raw), path)
    assert part is None or isinstance(part, mime.Part)


# -- messages built from a known tree ---------------------------------------------------------


@dataclass
class Leaf:
    body: bytes
    typed: bool


@dataclass
class Multi:
    children: list


@dataclass
class Encapsulated:
    inner: object


bodies = st.text(alphabet="ab .\r\n=", max_size=40).map(str.encode)
leaves = st.builds(Leaf, bodies, st.booleans())
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Multi, st.lists(inner, min_size=1, max_size=4)),
        st.builds(Encapsulated, inner),
    ),
    max_leaves=12,
)


def render(tree, path: str = "0") -> bytes:
    """A MIME entity (header, blank line, body) for ``tree``; boundaries unique per path."""
    if isinstance(tree, Leaf):
        header = b"Content-Type: text/plain; charset=us-ascii\r\n" if tree.typed else b""
        return header + b"\r\n" + tree.body
    if isinstance(tree, Encapsulated):
        return b"Content-Type: message/rfc822\r\n\r\n" + render(tree.inner, path + "m")
    boundary = f"=_{path}_=".encode()
    out = [b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble\r\n']
    for i, child in enumerate(tree.children):
        out.append(b"--" + boundary + b"\r\n" + render(child, f"{path}.{i}") + b"\r\n")
    out.append(b"--" + boundary + b"--\r\nepilogue")
    return b"".join(out)


def check(tree, part: mime.Part) -> None:
    if isinstance(tree, Leaf):
        assert (part.maintype, part.subtype) == (b"text", b"plain")
        assert part.body == tree.body
    elif isinstance(tree, Encapsulated):
        assert part.message is not None
        check(tree.inner, part.message)
    else:
        assert len(part.children) == len(tree.children)
        for child_tree, child in zip(tree.children, part.children, strict=True):
            check(child_tree, child)


def depth(tree) -> int:
    if isinstance(tree, Leaf):
        return 0
    if isinstance(tree, Encapsulated):
        return 1 + depth(tree.inner)
    return 1 + max(depth(c) for c in tree.children)


@given(trees)
def test_a_built_message_splits_into_its_tree_with_exact_bytes(tree):
    raw = b"Subject: built\r\n" + render(tree)
    root = mime.parse(raw)
    check(tree, root)
    imap_values(mime.bodystructure(root))


@given(st.builds(Multi, st.lists(leaves, min_size=1, max_size=6)))
def test_section_numbers_name_the_leaves_in_order(tree):
    root = mime.parse(render(tree))
    for number, leaf in enumerate(tree.children, 1):
        assert mime.find_part(root, [number]).body == leaf.body
    assert mime.find_part(root, [len(tree.children) + 1]) is None


# -- pathological shapes: bounded work --------------------------------------------------------


def _timed(raw: bytes, seconds: float = 2.0) -> mime.Part:
    # CPU time of this process: a quadratic path costs seconds of it; other processes'
    # load (CI runs two test processes) doesn't count, as wall-clock time would.
    start = time.process_time()
    root = mime.parse(raw)
    imap_values(mime.bodystructure(root))
    imap_values(mime.envelope(root.fields))
    assert time.process_time() - start < seconds
    return root


def test_many_folded_header_lines_cost_linear_time():
    # Found by fuzzing: unfolding appended to bytes per line, quadratic (640 KB: 3 s).
    _timed(b"X-Long: a\r\n" + b" b\r\n" * 250_000 + b"\r\nbody")


def test_deeply_nested_comments_in_an_address_header_are_harmless():
    # Found by fuzzing: email.utils parses comments recursively; "To: ((((" raised
    # RecursionError, so every FETCH ENVELOPE of that mailbox failed.
    root = _timed(b"To: " + b"(" * 100_000 + b"\r\nFrom: a@b.example\r\n\r\nbody")
    envelope = imap_values(mime.envelope(root.fields))[0]
    assert envelope[5] == b"NIL" and envelope[2] == [[b"NIL", b"NIL", b"a", b"b.example"]]


def test_thousands_of_nested_multiparts_stop_at_the_depth_limit():
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(20_000)
    )
    part, levels = _timed(raw), 0
    while part.children:
        part, levels = part.children[0], levels + 1
    assert levels <= mime.MAX_DEPTH


def test_thousands_of_nested_messages_stop_at_the_depth_limit():
    root = _timed(b"Content-Type: message/rfc822\r\n\r\n" * 50_000 + b"\r\nend")
    levels, part = 0, root
    while part.message is not None:
        part, levels = part.message, levels + 1
    assert levels <= mime.MAX_DEPTH


def test_many_parts_and_near_miss_delimiters_stay_bounded():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + (b"--bb\r\n" * 10 + b"--b\r\n\r\nx\r\n") * 20_000
    )
    assert len(_timed(raw).children) < mime.MAX_PARTS
