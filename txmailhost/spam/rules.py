"""The content rules: named header and body heuristics, each with a score.

Chosen from what still separates spam from ham in SpamAssassin's stock rules and rspamd's
symbols, and cheap on a ``Sample`` (``sample.py``): missing or forged Date and Message-ID,
HTML-only mail with hidden text or nothing but images, links through URL shorteners or to bare
IP addresses, link text that names another site than the link goes to, charset tricks
(unknown or undeclared charsets, words mixing Latin and Cyrillic/Greek letters), executables
in attachments, a shouting subject, the usual phrases, and what the mail-auth checks wrote in
``Authentication-Results:`` (RFC 8601) — read only from a field our own server wrote
(``authserv_id``), since anyone can write one into a message.

A rule's score is its weight in the total (``scoring.py``); negative scores speak for ham.
``txmailhost spam rules`` prints this table. The Bayes and sender-list rules are listed here
too, so every name in an ``X-Spam-Report`` is explained in one place; ``scoring.py`` decides
when they fire.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from txmailhost.addresslist import parse_address
from txmailhost.spam.sample import Sample


@dataclass(frozen=True)
class Context:
    """What a rule may compare the message with, besides itself."""

    now: float  # Unix time the message is judged at
    authserv_id: str = ""  # our Authentication-Results identity ("" trusts none)


@dataclass(frozen=True)
class Rule:
    name: str
    score: float
    description: str
    check: Callable[[Sample, Context], bool] | None  # None: decided by scoring.py


SHORTENERS = frozenset(
    [
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "goo.gl",
        "t.co",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
        "tiny.cc",
        "rb.gy",
        "t.ly",
        "s.id",
        "v.gd",
        "tr.im",
        "bl.ink",
        "short.io",
        "lnkd.in",
        "soo.gd",
        "clck.ru",
        "qr.ae",
        "adf.ly",
        "shorte.st",
        "bc.vc",
        "u.to",
        "x.co",
    ]
)
EXECUTABLE = frozenset(
    [
        "exe",
        "scr",
        "pif",
        "com",
        "bat",
        "cmd",
        "vbs",
        "vbe",
        "js",
        "jse",
        "wsf",
        "wsh",
        "hta",
        "jar",
        "msi",
        "msp",
        "lnk",
        "cpl",
        "ps1",
        "psm1",
        "reg",
        "dll",
        "sys",
        "application",
        "gadget",
        "inf",
        "scf",
    ]
)
DOCUMENT = frozenset(
    [
        "pdf",
        "doc",
        "docx",
        "xls",
        "xlsx",
        "txt",
        "jpg",
        "jpeg",
        "png",
        "gif",
        "zip",
        "rtf",
        "htm",
        "html",
    ]
)
PHRASES = tuple(
    """buy now|cheap|click here|limited time|act now|order now|100% free|risk-free|risk free
    |no prescription|viagra|cialis|casino|earn money|make money|work from home|winner
    |you have won|congratulations|lottery|100% satisfied|special promotion
    |miracle|lose weight|weight loss|bitcoin|crypto|investment opportunity|wire transfer
    |urgent reply|dear friend|million dollars|double your|no credit check|lowest price
    |best price|free gift|while supplies last|once in a lifetime|watches|replica|pharmacy
    |meds|enlargement""".replace("\n", "").split("|")
)
_PHRASE_TEXTS = tuple(p.strip().lower() for p in PHRASES if p.strip())
# each phrase with its maximal runs of letters and digits ("100% free": "100", "free")
_PHRASE_RUNS = tuple(
    (phrase, frozenset(run.encode() for run in re.findall("[a-z0-9]+", phrase)))
    for phrase in _PHRASE_TEXTS
)
_ALL_PHRASE_RUNS = frozenset().union(*(runs for _phrase, runs in _PHRASE_RUNS))
_WORD_TABLE = bytes(
    octet | 0x20 if chr(octet).isascii() and chr(octet).isalnum() else 0x20 for octet in range(256)
)  # for _words: ASCII letters in lower case, digits, and spaces for every other octet
_MESSAGE_ID = re.compile(r"^\s*<[^<>@\s]+@[^<>@\s]+>\s*$")
_IP_HOST = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|^\[?[0-9a-f:]+:[0-9a-f:]*\]?$", re.I)
# A run of host name characters that ends a word as a domain name does (_domain_in_text); it
# starts only where a run starts, so each run is scanned once.
_HOST_RUN = re.compile(r"(?<![a-z0-9.-])[a-z0-9.-]++(?=[/:?#]|\s|$)", re.I)
_TOP_LABEL = re.compile(r"[a-z]{2,}", re.I)
_PLAIN_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://([^\x00-\x20\x7f-\U0010ffff/?#\[\]]*)(?:[/?#]|\Z)"
)
_QUOTED_NAME = re.compile(r'[ \t]*"[^"\\\r@()]*"[ \t]*<[^"()]*\Z')
_SHOUTING = re.compile(r"[!?$€]{3}|!.*!.*!")
_USUAL_DATE = re.compile(
    r"(?:[A-Za-z]{3}, )?([0-9]{1,2}) ([A-Za-z]{3}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r" ([+-])([0-9]{2})([0-9]{2})(?:[ \t].*)?\Z",
    re.DOTALL,
)
# A zone after the time of day: an offset, or a name (obs-zone: "UT", "EST", "Z", an unknown
# one). "yesterday" or a time with nothing after it has none.
_ZONE_GIVEN = re.compile(r"[0-9]:[0-9]{2}(?::[0-9]{2})?[ \t\r\n]+(?:[+-][0-9]{4}|[A-Za-z]{1,5})\b")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_MIXED_WORD = re.compile(r"\w{3,}")
_GREEK_OR_CYRILLIC = re.compile("[\u0370-\u03ff\u0400-\u04ff]")


def _host(url: str) -> str:
    """The host a URL names, lower case, without a final dot ("" if none or unreadable).

    The usual ``scheme://host/...`` is read by ``_PLAIN_URL`` (under 1 us, where
    ``urlsplit`` and ``.hostname`` take several): what urlsplit would take for the netloc,
    since the URL starts with a scheme's characters and ``://`` and the netloc is printable
    ASCII up to the first ``/``, ``?``, ``#`` or the end (so urlsplit strips nothing before
    it, the first ``:`` ends the scheme, and no bracket or NFKC check applies), and
    ``.hostname`` is what follows the last ``@`` up to a ``:``. Anything else goes to
    urlsplit."""
    if url.lower().startswith("www."):
        url = "http://" + url
    plain = _PLAIN_URL.match(url)
    if plain is not None:
        return plain.group(1).rpartition("@")[2].partition(":")[0].lower().rstrip(".")
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def _registered(host: str) -> str:
    """The last two labels (three under a two-letter second level such as co.uk): close
    enough to compare where a link says it goes with where it goes."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _field(s: Sample, name: str) -> str | None:
    """``s.header(name)`` for a lower-case ``name``, in a plain loop: the rules read a
    field up to 13 times a message, and the generator ``header`` uses made that 13 us (4
    this way) for the public corpus's 22 fields a message."""
    for key, value in s.headers:
        if key == name:
            return value
    return None


def _date(sample: Sample) -> float | None:
    """The Date field as a timestamp (None: absent, unreadable or without a zone); parsed
    once for the two rules that ask (``sample.memo``)."""
    if "date" not in sample.memo:
        sample.memo["date"] = _parse_date(sample)
    return sample.memo["date"]


def _parse_date(sample: Sample) -> float | None:
    """The library reads ``-0000`` and a zone name it doesn't know as no zone at all (a naive
    datetime), as it reads a date without a zone. RFC 5322 3.3 and 4.3 tell them apart: a
    date without a zone is no date, but ``-0000`` is a valid zone (the time is in UTC, the
    sender's offset unknown; Python's own ``formatdate`` writes it, and a quarter of the
    corpus's easy ham 1 has it), and an unknown alphabetic zone SHOULD be read as ``-0000``."""
    value = _field(sample, "date")
    if value is None:
        return None
    try:
        parsed = _usual_date(value)
        if parsed is None:
            parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a zone past a C int
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        if not _ZONE_GIVEN.search(value):
            return None
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _usual_date(value: str) -> datetime.datetime | None:
    """What ``parsedate_to_datetime`` gives for a date of RFC 5322's usual form ("Fri, 4
    Dec 2026 10:00:00 +0100", the weekday optional, anything after the zone ignored), in
    half its time; None for any other form (it is asked then).

    It follows ``email._parseaddr._parsedate_tz`` on that form: the first word, ending in a
    comma, dropped; day, month, year, time and zone the next five words; a year under 100
    read as 1969-2068; the zone ``+hhmm`` as seconds east, ``-0000`` as "no zone"; and the
    datetime made just as ``parsedate_to_datetime`` makes it (so an impossible day, hour
    or offset raises the same ValueError)."""
    usual = _USUAL_DATE.match(value)
    if usual is None:
        return None
    day, month_name, year_text, hour, minute, second, sign, zone_hours, zone_minutes = (
        usual.groups()
    )
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    year = int(year_text)
    if year < 100:
        year += 1900 if year > 68 else 2000
    fields = (year, month, int(day), int(hour), int(minute), int(second))
    offset = int(zone_hours) * 3600 + int(zone_minutes) * 60
    if offset == 0 and sign == "-":
        return datetime.datetime(*fields)
    if sign == "-":
        offset = -offset
    return datetime.datetime(*fields, tzinfo=datetime.timezone(datetime.timedelta(seconds=offset)))


def missing_date(s: Sample, c: Context) -> bool:
    return _field(s, "date") is None


def invalid_date(s: Sample, c: Context) -> bool:
    return _field(s, "date") is not None and _date(s) is None


# How far ahead of its arrival a message's Date may be before DATE_IN_FUTURE fires (arrival:
# now, or when the trusted relay that hands it on received it, ``scoring.arrival``). Judged
# at the corpus messages' first ``Received:`` date, 19% of spam 2 is dated 3 hours or more
# ahead of it, 0.1% of easy ham 2, none of easy ham 1, and of hard ham one message of 250
# (12 hours ahead); between 30 minutes and 3 hours ahead lie 2.4% of hard ham (a sender's
# clock or zone a little off) and 3.8% of spam 2. At 3 hours instead of 12: spam 2 caught
# 95.53% -> 95.76%, ham in Junk the same (five splits, 900 + 900).
FUTURE_SLACK = 3 * 3600


def date_in_future(s: Sample, c: Context) -> bool:
    when = _date(s)
    return when is not None and when > c.now + FUTURE_SLACK


def missing_message_id(s: Sample, c: Context) -> bool:
    return _field(s, "message-id") is None


def invalid_message_id(s: Sample, c: Context) -> bool:
    value = _field(s, "message-id")
    return value is not None and not _MESSAGE_ID.match(value)


def missing_from(s: Sample, c: Context) -> bool:
    return _field(s, "from") is None


def missing_subject(s: Sample, c: Context) -> bool:
    return _field(s, "subject") is None


def subject_all_caps(s: Sample, c: Context) -> bool:
    subject = _field(s, "subject") or ""
    if subject.isascii() and not subject.isupper():  # a small letter, or no letter at all
        return False
    letters = [ch for ch in subject if ch.isalpha()]
    return len(letters) >= 10 and all(ch.isupper() for ch in letters)


def subject_shouting(s: Sample, c: Context) -> bool:
    return bool(_SHOUTING.search(_field(s, "subject") or ""))


def body_excess_exclaim(s: Sample, c: Context) -> bool:
    return "!!!" in s.text[:65536]  # a run of three or more (a search: 60 us for 4 KiB)


def spam_phrases(s: Sample, c: Context) -> bool:
    return _phrases(s) >= 2


def spam_phrases_many(s: Sample, c: Context) -> bool:
    return _phrases(s) >= 5


def _phrases(s: Sample) -> int:
    """How many of ``PHRASES`` the subject and the first 64 KiB of text hold, found by
    substring search at word boundaries (a regular expression of 50 alternatives costs
    tens of milliseconds on 64 KiB; this, a few hundred microseconds).

    Searching the text once per phrase still cost 60 us a message, so a phrase is searched
    for only if each of its words is a word of the text (``_words``): most mail has none
    or a few of those phrases. A phrase ``_has_word`` would find passes that test, so the
    count is the same."""
    if "phrases" not in s.memo:
        text = (_field(s, "subject") or "") + "\n" + s.text[:65536]
        words = _words(text)
        candidates = [phrase for phrase, runs in _PHRASE_RUNS if runs <= words]
        if candidates:
            text = text.lower()
        s.memo["phrases"] = sum(1 for phrase in candidates if _has_word(text, phrase))
    return s.memo["phrases"]


def _words(text: str) -> frozenset[bytes]:
    """Which of the words of ``PHRASES`` (``_ALL_PHRASE_RUNS``) stand in ``text``, lower
    cased, as words: as runs of ASCII letters and digits with a space, punctuation, a
    non-ASCII character or an end of the text on either side. One pass of C over the
    text: encoded, its letters and digits kept (capitals made small), the rest spaces.

    Why a phrase that ``_has_word`` finds in ``text.lower()`` has all of its runs here:
    where it stands, the characters on either side of it are not ``isalnum()``, and each
    run of letters and digits inside it has the phrase's own spaces, ``%`` or ``-`` (not
    ``isalnum()`` either) or its ends next to it. So each run has, on both sides, an end
    of the text or a character that is ASCII and not a letter or digit (a space here) or
    non-ASCII (``?`` by the encoding, then a space). The run's own characters are ASCII
    letters and digits and stay as they are. (A non-ASCII letter next to a run cuts the
    run here where ``isalnum()`` would not: that can only add words, never lose one.)
    Lowering an ASCII text is the table's own A-Z to a-z; other texts are lowered first,
    since lowering can make an ASCII letter of another (the Kelvin sign's "k")."""
    raw = text.encode("ascii") if text.isascii() else text.lower().encode("ascii", "replace")
    return _ALL_PHRASE_RUNS.intersection(raw.translate(_WORD_TABLE).split())


def _has_word(text: str, phrase: str) -> bool:
    start = text.find(phrase)
    while start >= 0:
        end = start + len(phrase)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = text.find(phrase, start + 1)
    return False


def html_only(s: Sample, c: Context) -> bool:
    return "text/html" in s.content_types and "text/plain" not in s.content_types


def html_hidden_text(s: Sample, c: Context) -> bool:
    return len(s.hidden_text) >= 20


def html_image_only(s: Sample, c: Context) -> bool:
    return s.images > 0 and len(s.text.strip()) < 200 and "text/html" in s.content_types


def url_shortener(s: Sample, c: Context) -> bool:
    """A link's host is a URL shortener's."""
    return bool(_links(s) & _SHORTENED)


def url_ip_address(s: Sample, c: Context) -> bool:
    """A link's host is an IPv4 or IPv6 address."""
    return bool(_links(s) & _TO_IP_ADDRESS)


def link_text_mismatch(s: Sample, c: Context) -> bool:
    """An anchor whose text names a site (``www.mybank.com``, ``https://paypal.com``) while
    its href goes to another: the phisher's classic."""
    return bool(_links(s) & _MISNAMED)


_SHORTENED, _TO_IP_ADDRESS, _MISNAMED = 1, 2, 4


def _links(s: Sample) -> int:
    """What the three link rules find, as bits, worked out once per message
    (``sample.memo``) with each URL's host taken once: a message's links are also in its
    URLs, and the rules asked for the same host up to three times."""
    if "links" in s.memo:
        return s.memo["links"]
    hosts: dict[str, str] = {}
    for url in s.urls:
        if url not in hosts:
            hosts[url] = _host(url)
    found = 0
    if any(host in SHORTENERS for host in hosts.values()):
        found |= _SHORTENED
    if any(host and _IP_HOST.match(host) for host in hosts.values()):
        found |= _TO_IP_ADDRESS
    for link in s.links:
        if "@" in link.text or "." not in link.text:  # no domain in it (_domain_in_text)
            continue
        named = _domain_in_text(link.text.strip())
        if named is None:
            continue
        target = hosts[link.href] if link.href in hosts else _host(link.href)
        if target and _registered(named) != _registered(target):
            found |= _MISNAMED
            break
    s.memo["links"] = found
    return found


def _domain_in_text(text: str) -> str | None:
    r"""The first domain name ``text`` names ("www.mybank.com", "https://paypal.com/login"):
    labels of letters, digits and hyphens joined by dots, the last of two or more letters,
    followed by "/", ":", "?", "#", white space or the end.

    What ``(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#]|\s|$)`` (ignoring case)
    finds first, as its group, without trying it at every character: it took 16 s for a
    link whose text is 16 KiB of "a.", 4 minutes for 64 KiB. Such a name ends where a run of
    those characters and dots does, so each run (``_HOST_RUN``) is looked at once: its
    last label is the top one, and the name is the longest tail of the run before it with
    no empty label ("a..b.com": "b.com")."""
    for run in _HOST_RUN.finditer(text):
        labels, dot, top = run.group().rpartition(".")
        if not dot or not _TOP_LABEL.fullmatch(top):
            continue
        name = labels.rpartition("..")[2].lstrip(".")
        if name and not name.endswith("."):
            return f"{name}.{top}"
    return None


def charset_unknown(s: Sample, c: Context) -> bool:
    return bool(s.unknown_charsets)


def undeclared_8bit(s: Sample, c: Context) -> bool:
    return s.undeclared_8bit


def mixed_script(s: Sample, c: Context) -> bool:
    """A word mixing Latin with Cyrillic or Greek letters ("PаyPal" with a Cyrillic а): how
    spam looks like a brand to a reader and like nothing to a word filter."""
    subject, sender = _field(s, "subject") or "", _field(s, "from") or ""
    if subject.isascii() and sender.isascii() and s.text.isascii():  # O(1): no such letter
        return False
    text = subject + " " + sender + " " + s.text[:16384]
    if len(text.encode("latin-1", "ignore")) == len(text):  # none above U+00FF: a C copy
        return False  # (the search below takes 2 ns a character)
    if not _GREEK_OR_CYRILLIC.search(text):
        return False
    for match in _MIXED_WORD.finditer(text):
        word = match.group(0)
        latin = any("a" <= ch.lower() <= "z" for ch in word)
        other = any("\u0370" <= ch <= "\u03ff" or "\u0400" <= ch <= "\u04ff" for ch in word)
        if latin and other:
            return True
    return False


def _extensions(name: str) -> list[str]:
    return [piece.lower().strip() for piece in name.split(".")[1:]]


def boundary_reused(s: Sample, c: Context) -> bool:
    return s.boundary_reused


def executable_attachment(s: Sample, c: Context) -> bool:
    return any((_extensions(n) or [""])[-1] in EXECUTABLE for n in s.attachments)


def double_extension(s: Sample, c: Context) -> bool:
    """``invoice.pdf.exe``: a document's name in front of an executable's."""
    for name in s.attachments:
        parts = _extensions(name)
        if len(parts) >= 2 and parts[-1] in EXECUTABLE and parts[-2] in DOCUMENT:
            return True
    return False


# Outlook Express and the Outlooks of before 2007 ("Microsoft Outlook, Build 10.0.2627",
# "Microsoft Outlook IMO", "CWS") write an ``X-MimeOLE:`` field beside their ``X-Mailer:``
# (Outlook Express for the Macintosh never did, and today's Outlook, "Microsoft Outlook 16.0",
# writes neither). Mail that names one of them without it was made by something else
# pretending (SpamAssassin's FORGED_MUA_OUTLOOK and MISSING_MIMEOLE). In the public corpus:
# 227 of spam 2's 1,396, none of the 4,150 ham.
_OLD_OUTLOOK = re.compile(
    r"\s*Microsoft Outlook(?: Express(?! Macintosh)|,? Build| IMO| CWS)", re.I
)


def forged_outlook(s: Sample, c: Context) -> bool:
    mailer = _field(s, "x-mailer")
    return (
        mailer is not None
        and _OLD_OUTLOOK.match(mailer) is not None
        and _field(s, "x-mimeole") is None
    )


def from_name_address_mismatch(s: Sample, c: Context) -> bool:
    """A display name that is itself an address, not the one the mail is from."""
    value = _field(s, "from")
    if not value or not _name_may_hold_address(value):
        return False
    name, address = parse_address(value)
    shown = re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", name)
    return bool(shown and address and shown.group(0).lower() != address.lower())


def _name_may_hold_address(value: str) -> bool:
    """False where the display name ``parseaddr`` gives for this From: value has no "@"
    in it, so the rule above can't fire (``parseaddr`` costs 5-20 us; most From: fields
    are told apart here in under one).

    ``parseaddr`` makes a name only of the field's own characters: the words before an
    ``<address>``, which end at any special character (``@`` among them), the content of
    quoted strings, and comments. So a field without an ``@``, or with neither quotes nor
    comments, gives a name without one; and so does the common ``"Name" <address>`` whose
    quoted name has no ``@``, backslash, quote or parenthesis in it, whose only other
    characters before the ``<`` are spaces and tabs, and whose field has no quotes or
    parentheses after it (``_QUOTED_NAME``)."""
    if "@" not in value:
        return False
    if '"' not in value and "(" not in value:
        return False
    return _QUOTED_NAME.match(value) is None


_AR_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_AR_COMMENT = re.compile(r"\([^()]*\)")
_AR_RESULT = re.compile(r"\s*(spf|dkim|dmarc|arc)\s*=\s*([a-z]+)")


def _auth_results(s: Sample, c: Context) -> dict[str, str]:
    """method -> result from ``Authentication-Results:`` fields our server wrote (RFC 8601
    §2.2: the authserv-id first, then one ``method=result`` a resinfo, between semicolons).
    Only what starts a resinfo is a result: a property's value is the sender's text (an
    envelope sender ``dmarc=pass@...``, a selector ``s=dmarc=pass``) and read anywhere it
    turned a DMARC failure into a pass. Quoted strings and comments say nothing here."""
    results: dict[str, str] = {}
    if not c.authserv_id:
        return results
    for value in s.all("authentication-results"):
        value = _AR_QUOTED.sub('""', value)
        while True:  # comments nest (RFC 5322 3.2.2): the innermost go first
            bare = _AR_COMMENT.sub(" ", value)
            if bare == value:
                break
            value = bare
        ident, *resinfos = value.lower().split(";")
        if ident.strip().split()[:1] != [c.authserv_id.lower()]:
            continue
        for resinfo in resinfos:
            match = _AR_RESULT.match(resinfo)
            if match:
                results.setdefault(match.group(1), match.group(2))
    return results


_AUTH_VERDICTS = (  # (method, the results that count) for the four rules below, in order
    ("spf", ("fail", "softfail")),
    ("dkim", ("fail", "permerror")),
    ("dmarc", ("fail",)),
    ("dmarc", ("pass",)),
)


def _auth_verdicts(s: Sample, c: Context) -> int:
    """Which of ``_AUTH_VERDICTS`` hold, as bits (1 << index), found once per message and
    authserv-id (``sample.memo``) for the four rules that ask."""
    key = "auth " + c.authserv_id
    if key not in s.memo:
        results = _auth_results(s, c)
        s.memo[key] = sum(
            1 << index
            for index, (method, counted) in enumerate(_AUTH_VERDICTS)
            if results.get(method) in counted
        )
    return s.memo[key]


def spf_fail(s: Sample, c: Context) -> bool:
    return bool(_auth_verdicts(s, c) & 1)  # spf=fail or softfail


def dkim_fail(s: Sample, c: Context) -> bool:
    return bool(_auth_verdicts(s, c) & 2)  # dkim=fail or permerror


def dmarc_fail(s: Sample, c: Context) -> bool:
    return bool(_auth_verdicts(s, c) & 4)  # dmarc=fail


def dmarc_pass(s: Sample, c: Context) -> bool:
    return bool(_auth_verdicts(s, c) & 8)  # dmarc=pass


RULES: tuple[Rule, ...] = (
    Rule("MISSING_DATE", 1.0, "no Date: field (RFC 5322 requires one)", missing_date),
    Rule("INVALID_DATE", 1.5, "a Date: field that isn't an RFC 5322 date", invalid_date),
    Rule("DATE_IN_FUTURE", 1.5, "dated more than 3 hours ahead", date_in_future),
    Rule("MISSING_MID", 0.5, "no Message-ID: field", missing_message_id),
    Rule("INVALID_MSGID", 1.0, "a Message-ID: that isn't <left@right>", invalid_message_id),
    Rule("FORGED_MUA_OUTLOOK", 1.5, "claims an old Outlook without its X-MimeOLE:", forged_outlook),
    Rule("MISSING_FROM", 1.5, "no From: field", missing_from),
    Rule("MISSING_SUBJECT", 0.5, "no Subject: field", missing_subject),
    Rule("SUBJ_ALL_CAPS", 1.0, "the subject is in capitals", subject_all_caps),
    Rule("SUBJ_SHOUTING", 0.8, "the subject shouts (!!!, $$$)", subject_shouting),
    Rule("BODY_EXCESS_EXCLAIM", 0.5, "!!! in the text", body_excess_exclaim),
    Rule("SPAM_PHRASES", 0.5, "two or more of the usual spam phrases", spam_phrases),
    Rule("SPAM_PHRASES_MANY", 1.5, "five or more of the usual spam phrases", spam_phrases_many),
    Rule("HTML_ONLY", 0.3, "HTML without a plain-text alternative", html_only),
    Rule("HTML_HIDDEN_TEXT", 1.0, "HTML text styled so the reader can't see it", html_hidden_text),
    Rule("HTML_IMAGE_ONLY", 1.5, "HTML with images and hardly any text", html_image_only),
    Rule("URL_SHORTENER", 1.5, "a link through a URL shortener", url_shortener),
    Rule("URL_IP_ADDRESS", 1.5, "a link to a bare IP address", url_ip_address),
    Rule(
        "LINK_TEXT_MISMATCH",
        1.0,
        "link text names another site than the link goes to",
        link_text_mismatch,
    ),
    Rule("CHARSET_UNKNOWN", 1.0, "a charset no decoder knows", charset_unknown),
    Rule("UNDECLARED_8BIT", 0.7, "8-bit text with no charset saying what it is", undeclared_8bit),
    Rule("MIXED_SCRIPT", 2.0, "words mixing Latin and Cyrillic/Greek letters", mixed_script),
    Rule("EXE_ATTACHMENT", 4.0, "an executable or script attached", executable_attachment),
    Rule(
        "MIME_BOUNDARY_REUSED",
        2.0,
        "a multipart inside one with the same boundary, hiding parts from some readers",
        boundary_reused,
    ),
    Rule(
        "DOUBLE_EXTENSION",
        3.0,
        "an attachment named like a document but executable",
        double_extension,
    ),
    Rule(
        "FROM_NAME_MISMATCH",
        1.5,
        "the From: display name is another address",
        from_name_address_mismatch,
    ),
    Rule("AUTH_SPF_FAIL", 1.5, "SPF failed (our Authentication-Results)", spf_fail),
    Rule("AUTH_DKIM_FAIL", 1.0, "a DKIM signature failed (our Authentication-Results)", dkim_fail),
    Rule("AUTH_DMARC_FAIL", 3.0, "DMARC failed (our Authentication-Results)", dmarc_fail),
    Rule("AUTH_DMARC_PASS", -0.5, "DMARC passed (our Authentication-Results)", dmarc_pass),
    Rule("BAYES_00", -3.0, "the classifier: spam probability below 1%", None),
    Rule("BAYES_05", -1.5, "the classifier: spam probability 1-5%", None),
    Rule("BAYES_20", -0.5, "the classifier: spam probability 5-20%", None),
    Rule("BAYES_50", 1.0, "the classifier: spam probability 50-80%", None),
    Rule("BAYES_80", 2.5, "the classifier: spam probability 80-95%", None),
    Rule("BAYES_95", 3.5, "the classifier: spam probability 95-99%", None),
    # 99-99.9% alone is not Junk (3.5, +1.5 of other rules is): on the public corpus the
    # hard ham (commercial mail asked for) that reaches 99% is twice what reaches 99.9%
    Rule("BAYES_99", 3.5, "the classifier: spam probability 99-99.9%", None),
    Rule("BAYES_999", 5.0, "the classifier: spam probability 99.9% or more", None),
    # connection.py: who is sending (for loopback, private and trusted_relays clients: the
    # client before them, as their Received: field has it; txmailhost/received.py)
    Rule("HELO_BARE_IP", 1.5, "HELO is a bare IP address, not a name or [literal]", None),
    Rule("HELO_NO_FQDN", 1.0, "HELO is not a fully qualified name", None),
    Rule("HELO_OUR_NAME", 2.5, "the client says HELO with our own host name", None),
    Rule("HELO_NXDOMAIN", 1.0, "the HELO name has no address or MX in DNS", None),
    Rule("RDNS_NONE", 1.0, "the client address has no reverse DNS", None),
    Rule("RDNS_MISMATCH", 0.5, "the client's reverse DNS name doesn't resolve back to it", None),
    Rule("USER_ALLOWED", -100.0, "the recipient allows this sender", None),
    Rule("USER_BLOCKED", 100.0, "the recipient blocks this sender", None),
    # rspamd.py, when [filters.settings.spam] rspamd is set: the score listed is the default
    # weight; in a report it is rspamd's score times rspamd_weight
    Rule("RSPAMD", 1.0, "rspamd's score times rspamd_weight (1.0 by default)", None),
)
BY_NAME = {rule.name: rule for rule in RULES}
_CONTENT_RULES = tuple((rule, rule.check) for rule in RULES if rule.check is not None)


def content_hits(sample: Sample, context: Context | None = None) -> list[Rule]:
    """The content rules that fire on ``sample``, in table order."""
    context = context or Context(now=time.time())
    return [rule for rule, check in _CONTENT_RULES if check(sample, context)]
