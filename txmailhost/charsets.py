"""Text in a declared charset, read as mail readers read it (the WHATWG Encoding Standard).

Mail declares charsets it doesn't keep to. Chinese mail labelled ``gb2312`` holds GBK
characters (``0x8C 0xC2`` is no GB 2312 character); Korean mail labelled ``ks_c_5601-1987``
or ``euc-kr`` holds the Unified Hangul Code; Japanese ``shift_jis`` holds Microsoft's
extensions; Western mail labelled ``iso-8859-1`` (or ``us-ascii``) holds Windows-1252's curly
quotes and dashes in 0x80-0x9F. Browsers, Thunderbird and every mail reader built on the
Encoding Standard decode those labels with the superset. Python's codecs take the labels
literally: the GBK characters of a ``gb2312`` subject fail strictly (``email.header``
then gave up and the subject was sorted as its raw ``=?gb2312?B?...?=`` text) and become
U+FFFD where errors are replaced (so SEARCH could not find a word holding one).

``decode`` is what the IMAP server (SORT, THREAD and SEARCH), the webmail and Sieve read
text through: the label mapped as the Encoding Standard maps it, errors replaced, an unknown
label read as UTF-8.
"""

from __future__ import annotations

import codecs

# label (lower case) -> the Python codec that decodes what the Encoding Standard decodes for it
_SUPERSETS = {
    **dict.fromkeys(
        ("gb2312", "gbk", "x-gbk", "chinese", "csgb2312", "csiso58gb231280", "gb_2312",
         "gb_2312-80", "iso-ir-58", "euc-cn", "cp936", "ms936", "windows-936"),
        "gb18030",
    ),
    **dict.fromkeys(
        ("euc-kr", "ks_c_5601-1987", "ks_c_5601-1989", "ksc5601", "ksc_5601", "korean",
         "csksc56011987", "csEUCKR".lower(), "iso-ir-149", "windows-949", "cp949", "uhc"),
        "cp949",
    ),
    **dict.fromkeys(
        ("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "ms932",
         "windows-31j", "cp932"),
        "cp932",
    ),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys(
        ("iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "us-ascii", "ascii",
         "ansi_x3.4-1968", "cp819", "ibm819", "iso-ir-100", "csisolatin1", "windows-1252",
         "x-cp1252"),
        "cp1252",
    ),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "latin5", "l5", "windows-1254"), "cp1254"),
    **dict.fromkeys(("tis-620", "iso-8859-11", "windows-874", "dos-874"), "cp874"),
    **dict.fromkeys(("iso-8859-8-i", "csiso88598i", "logical"), "iso-8859-8"),
}  # fmt: skip


def codec(label: str | None) -> str | None:
    """The Python codec for a declared charset: its superset where mail readers use one,
    else the label if Python knows it as a text codec; None for no label or an unknown one."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    if name in _SUPERSETS:
        return _SUPERSETS[name]
    try:
        found = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    return found.name if getattr(found, "_is_text_encoding", True) else None


_UNDECLARED = frozenset({"", "us-ascii", "ascii", "ansi_x3.4-1968"})


def decode(data: bytes, label: str | None) -> str:
    """``data`` as text in the declared charset ``label`` (see the module docstring); what
    doesn't decode becomes U+FFFD, an unknown label is read as UTF-8. 8-bit text with no
    charset, or ``us-ascii`` (the default of a part without one, RFC 2045 5.2), is UTF-8
    when it is valid UTF-8 (RFC 6532 mail, a mailer that didn't say), else Windows-1252."""
    if (label or "").strip().strip('"').lower() in _UNDECLARED and not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    name = codec(label) or "utf-8"
    try:
        return data.decode(name, "replace")
    except (LookupError, UnicodeError, ValueError):  # a codec that takes no "replace"
        return data.decode("utf-8", "replace")
