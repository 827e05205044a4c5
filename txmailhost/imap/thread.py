"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3), and the THREAD response syntax.

Both take the matching messages in sequence order, each with its number as the client sees it
(sequence number or UID), its sent date (``headerkeys``: the Date field, else INTERNALDATE) and
its header keys, and return the threads as the bytes of ``* THREAD`` (``(1 2)(3 (4)(5))``).

REFERENCES follows the RFC's steps exactly, including the parts that surprise: a message whose
References name a message that is later found to be its own descendant keeps no parent (step
1.B drops the old link before refusing the looping one), a duplicate Message-ID is used only by
its first message, dummies stand for referenced but absent messages and are pruned (step 4),
and roots with the same base subject are merged (step 5). Every walk over the trees is
iterative: a 100,000-message reply chain is as deep as it is long, far past Python's recursion
limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from typing import NamedTuple

from txmailhost.imap.headerkeys import HeaderKeys

MAX_REFERENCES = 500  # a References field longer than this keeps its last ids only
MAX_WALK = 10_000  # ancestors looked at for one loop check


class ThreadMessage(NamedTuple):
    number: int  # what the response names it by: sequence number or UID
    seq: int
    sent: float
    keys: HeaderKeys


class _Node:
    """A container of step 1: a message, or a dummy (``message`` None) for an id only
    referenced."""

    __slots__ = ("children", "message", "parent", "sort_key")

    def __init__(self, message: ThreadMessage | None = None) -> None:
        self.message = message
        self.parent: _Node | None = None
        self.children: list[_Node] = []
        self.sort_key: tuple[float, int] = (0.0, 0)


def _would_loop(parent: _Node, child: _Node) -> bool:
    """Whether making ``parent`` the parent of ``child`` closes a loop: ``child`` is ``parent``
    or one of its ancestors. A child without children is nobody's ancestor (the usual case,
    answered at once); otherwise ``parent``'s ancestors are walked, at most ``MAX_WALK`` of
    them: a crafted chain deeper than that is refused the link rather than made to cost
    quadratic time."""
    if child is parent:
        return True
    if not child.children:
        return False
    current = parent.parent
    for _ in range(MAX_WALK):
        if current is None:
            return False
        if current is child:
            return True
        current = current.parent
    return True


def _link(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _unlink(child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _walk(roots: list[_Node]) -> Iterator[_Node]:
    """Every node under ``roots``, parents before their children."""
    stack = roots[::-1]
    pop, extend = stack.pop, stack.extend
    while stack:
        node = pop()
        yield node
        if node.children:  # most nodes have none
            extend(node.children[::-1])


def _sort(roots: list[_Node]) -> None:
    """Steps 5 and 7: siblings by sent date, then sequence number; a dummy takes the key of its
    first child (after that child's own siblings are sorted)."""
    for node in reversed(list(_walk(roots))):
        if len(node.children) > 1:
            node.children.sort(key=_sort_key)
        if node.message is not None:
            node.sort_key = (node.message.sent, node.message.seq)
        elif node.children:
            node.sort_key = node.children[0].sort_key
    roots.sort(key=_sort_key)


def _sort_key(node: _Node) -> tuple[float, int]:
    return node.sort_key


def _prune(roots: list[_Node]) -> list[_Node]:
    """Step 4: drop childless dummies; replace a dummy by its children, except at the root
    where that is done only for a single child."""
    for node in reversed(list(_walk(roots))):
        kept: list[_Node] = []
        for child in node.children:
            if child.message is None:
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
    pruned: list[_Node] = []
    for root in roots:
        if root.message is None and len(root.children) <= 1:
            for child in root.children:
                child.parent = None
            pruned.extend(root.children)
        else:
            pruned.append(root)
    return pruned


def _first_message(node: _Node) -> ThreadMessage | None:
    return node.message if node.message is not None else node.children[0].message


def _group_by_subject(roots: list[_Node]) -> list[_Node]:
    """Step 5: gather roots whose base subjects are equal under one thread."""
    table: dict[str, _Node] = {}
    for root in roots:
        message = _first_message(root)
        if message is None or not message.keys.subject:
            continue
        old = table.get(message.keys.subject)
        if (
            old is None
            or (root.message is None and old.message is not None)
            or (
                old.message is not None
                and old.message.keys.reply
                and root.message is not None
                and not root.message.keys.reply
            )
        ):
            table[message.keys.subject] = root
    result: list[_Node] = []
    for root in roots:
        if root.parent is not None:  # an earlier merge put it under a new dummy
            continue
        message = _first_message(root)
        if message is None or not message.keys.subject:
            result.append(root)
            continue
        subject = message.keys.subject
        old = table[subject]
        if old is root:
            result.append(root)
            continue
        if old.message is None and root.message is None:
            for child in root.children:
                child.parent = old
            old.children.extend(root.children)
            root.children = []
        elif old.message is None or (
            root.message is not None and root.message.keys.reply and not old.message.keys.reply
        ):
            # under the dummy, or a reply under its original: a sibling of their children
            _link(old, root)
        else:
            dummy = _Node()
            table[subject] = dummy
            _link(dummy, old)
            _link(dummy, root)
            result.append(dummy)
    # A table entry that moved under a new dummy is no longer a root.
    return [root for root in result if root.parent is None and (root.message or root.children)]


def references(messages: list[ThreadMessage]) -> list[_Node]:
    """THREAD=REFERENCES over ``messages`` (in sequence order): the sorted root set."""
    by_id: dict[str, _Node] = {}
    nodes: list[_Node] = []

    def container(message_id: str) -> _Node:
        node = by_id.get(message_id)
        if node is None:
            node = by_id[message_id] = _Node()
            nodes.append(node)
        return node

    for message in messages:
        # Step 1: a message takes the container its id names, unless an earlier message
        # already did (a duplicate id is treated as no id).
        message_id = message.keys.message_id
        existing = by_id.get(message_id) if message_id else None
        if existing is not None and existing.message is None:
            node = existing
            node.message = message
        else:
            node = _Node(message)
            nodes.append(node)
            if message_id and existing is None:
                by_id[message_id] = node
        refs = message.keys.references[-MAX_REFERENCES:]
        # 1.A: link each reference to the next, keeping existing parents and avoiding loops.
        previous: _Node | None = None
        for ref in refs:
            current = container(ref)
            if (
                previous is not None
                and current.parent is None
                and not _would_loop(previous, current)
            ):
                _link(previous, current)
            previous = current
        # 1.B: the last reference is the parent; a parent assumed earlier gives way.
        _unlink(node)
        if previous is not None and not _would_loop(previous, node):
            _link(previous, node)
    roots = [node for node in nodes if node.parent is None]  # step 2
    roots = _prune(roots)  # step 4
    # Step 5 sorts the roots: after pruning a root is a message or a dummy whose children are
    # messages, and a dummy sorts as its earliest child. The children are sorted by step 7.
    for root in roots:
        if root.message is not None:
            root.sort_key = (root.message.sent, root.message.seq)
        else:
            root.sort_key = min((c.message.sent, c.message.seq) for c in root.children)  # type: ignore[union-attr]
    roots.sort(key=lambda n: n.sort_key)
    roots = _group_by_subject(roots)  # step 6
    _sort(roots)  # step 7
    _unchain(nodes)  # every child is one of ``nodes`` (step 6 adds dummies only as roots)
    return roots


def ordered_subject(messages: list[ThreadMessage]) -> list[_Node]:
    """THREAD=ORDEREDSUBJECT: messages sorted by base subject then sent date; each run of one
    subject is a thread whose first message is the parent of all the others; threads are
    ordered by the sent date of their first message."""
    ordered = sorted(messages, key=lambda m: (m.keys.subject, m.sent, m.seq))
    roots = []
    for _subject, group in groupby(ordered, key=lambda m: m.keys.subject):
        first, *rest = list(group)
        root = _Node(first)
        root.sort_key = (first.sent, first.seq)
        root.children = [_Node(message) for message in rest]  # no parent links: nothing asks
        roots.append(root)
    roots.sort(key=lambda n: n.sort_key)
    return roots


def _unchain(nodes: list[_Node]) -> None:
    """Drop the parent links once the forest is built (``render`` and the webmail read only
    children): a child and its parent refer to each other, and 10,000 nodes in cycles would
    wait for the cyclic garbage collector, which walks them meanwhile; unchained, each is
    freed as soon as the answer is made."""
    for node in nodes:
        node.parent = None


def render(roots: list[_Node]) -> bytes:
    """The THREAD response data (RFC 5256 §4): ``(a b (c)(d))``; one child continues the
    chain, several children are each parenthesised, a dummy shows only its children."""
    out: list[str] = []
    for root in roots:
        stack: list[_Node | str] = [")", root, "("]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            pending: list[_Node | str] = []
            if item.message is not None:
                pending.append(str(item.message.number))
                if item.children:
                    pending.append(" ")
            if len(item.children) == 1 and item.message is not None:
                pending.append(item.children[0])
            else:
                for child in item.children:
                    pending.extend(("(", child, ")"))
            stack.extend(reversed(pending))
    return "".join(out).encode("ascii")
