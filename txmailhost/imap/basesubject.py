"""The base subject of a message (RFC 5256 §2.1): what SORT (SUBJECT) compares and what THREAD
groups by, so that "Re: [list] Fwd: lunch (fwd)" sorts and threads with "lunch".

The steps are the RFC's, in its order:

1. decode RFC 2047 encoded-words to Unicode, turn tabs and folding into spaces and collapse runs
   of whitespace into one space (done by the caller, ``header_text``, before this module);
2. remove trailing ``(fwd)`` and whitespace, repeatedly (subj-trailer);
3. remove leading whitespace and ``*subj-blob subj-refwd`` ("[list] Re:", "Fwd[2]:"), repeatedly;
4. remove a leading subj-blob ("[list] ") when what is left is not empty;
5. repeat 3 and 4 until neither applies;
6. if the text is ``[fwd: ... ]``, strip the wrapper and start again at step 2.

Whether anything of 2, 3 or 6 other than whitespace was removed says the message is a reply or
a forward: THREAD=REFERENCES (RFC 5256 §3, step 5) prefers the original as a thread's parent.
Case is kept here; the caller compares with the i;ascii-casemap collation (upper case).
"""

from __future__ import annotations

import re

_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:[ \t]|\(fwd\))$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-leader = (*subj-blob subj-refwd) / WSP ; subj-refwd = ("re" / ("fw" ["d"])) *WSP
# [subj-blob] ":"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)
_FWD_HEADER = "[fwd:"
MAX_ROUNDS = 1000  # each round removes text, so a subject can't loop; this bounds a crafted one


def collapse_whitespace(text: str) -> str:
    """Step 1's whitespace rule: every run of spaces, tabs and line breaks becomes one space."""
    return _WSP.sub(" ", text)


def base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, is a reply or forward) of an already decoded and collapsed subject."""
    text = subject
    reply = False
    for _ in range(MAX_ROUNDS):
        # step 2: trailers
        while True:
            match = _TRAILER.search(text)
            if match is None:
                break
            if match.group() not in (" ", "\t"):
                reply = True
            text = text[: match.start()]
        # steps 3-5: leaders and blobs
        while True:
            if text[:1] in (" ", "\t"):
                text = text.lstrip(" \t")
                continue
            match = _LEADER.match(text)
            if match is not None:
                reply = True
                text = text[match.end() :]
                continue
            blob = _LEADING_BLOB.match(text)
            if blob is not None and text[blob.end() :].strip(" \t"):
                text = text[blob.end() :]
                continue
            break
        # step 6: [fwd: ...]
        if text[: len(_FWD_HEADER)].lower() == _FWD_HEADER and text.endswith("]"):
            text = text[len(_FWD_HEADER) : -1]
            reply = True
            continue
        break
    return text, reply
