"""What SEARCH looks in, handed to the store's full-text index (``ITextIndex``).

The index narrows a search to candidates, which are then tested with the SEARCH matcher: its
answer must hold every message that matches. It does when each indexed text contains what the
matcher tests, so the texts come from the matcher's own ``Candidate``: TEXT's pieces (raw
message but for encoded bodies, decoded header fields, decoded base64/quoted-printable text
parts in their charset, HTML as written; BODY's pieces are within them), the decoded
Subject, and FROM/TO/CC/BCC with their normalized addresses. Pieces are joined by a line
feed: a needle never spans two pieces (``Candidate.whole_text``), so a trigram across a join
only adds a candidate, never hides one.

``version`` changes whenever these texts would: every index built with another one is
rebuilt on its next search.
"""

from __future__ import annotations

from txmailhost.imap.search import Candidate
from txmailhost.store.interfaces import StoredMessage


class SearchText:
    """The ``extractor`` of ``ITextIndex.text_candidates`` for IMAP SEARCH."""

    version = "imap-search-3"  # 3: charsets read as mail readers do (charsets.py)

    def columns(self, message: StoredMessage) -> dict[str, str]:
        """The case-folded text of each ``TEXT_FIELDS`` field of ``message`` (with its header
        and content)."""
        candidate = Candidate(0, message, False)
        return {
            "text": "\n".join(candidate.whole_text(False)),
            "subject": candidate.header_value(b"subject"),
            "from": candidate.address_value(b"from"),
            "to": candidate.address_value(b"to"),
            "cc": candidate.address_value(b"cc"),
            "bcc": candidate.address_value(b"bcc"),
        }


SEARCH_TEXT = SearchText()
