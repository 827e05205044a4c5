#!/usr/bin/env python3
"""Write a deterministic mbox file for imaptest's stress mode (mbox=PATH).

imaptest appends messages from an mbox in order and tracks them by
Message-ID, so every message here has a unique Message-ID. The mix covers
plain text, quoted-printable, multipart/alternative, multipart/mixed with a
base64 attachment, a forwarded message/rfc822, non-ASCII encoded headers,
several recipients, and sizes from a few hundred bytes to about 60 KB.

usage: gen_mbox.py OUT_PATH [COUNT]      (COUNT defaults to 300)
"""

import base64
import random
import sys

WORDS = [
    "mail",
    "server",
    "maildir",
    "folder",
    "message",
    "header",
    "body",
    "flag",
    "seen",
    "draft",
    "answered",
    "deleted",
    "recent",
    "expunge",
    "select",
    "examine",
    "fetch",
    "store",
    "search",
    "copy",
    "append",
    "uid",
    "sequence",
    "literal",
    "quoted",
    "atom",
    "envelope",
    "structure",
    "boundary",
    "charset",
    "twisted",
    "reactor",
    "deferred",
    "protocol",
    "factory",
    "imap",
    "pop",
    "smtp",
    "relay",
    "queue",
]
NAMES = [
    "Alice Example",
    "Bob Tester",
    "Carol Q. Public",
    "Dave",
    "Erin O'Neil",
    "Frank Muller",
    "Grace Hopper",
    "Heidi",
    "Ivan Petrov",
    "Judy",
]
DOMAINS = ["example.com", "example.org", "example.net", "test.example"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def addr(rng):
    name = rng.choice(NAMES)
    local = name.split()[0].lower().replace("'", "")
    dom = rng.choice(DOMAINS)
    if rng.random() < 0.2:
        return f"{local}@{dom}"
    if any(c in name for c in ".'"):
        return f'"{name}" <{local}@{dom}>'
    return f"{name} <{local}@{dom}>"


def text(rng, nwords, width=72):
    lines, cur = [], []
    for _ in range(nwords):
        cur.append(rng.choice(WORDS))
        if sum(len(w) + 1 for w in cur) > width:
            lines.append(" ".join(cur))
            cur = []
    if cur:
        lines.append(" ".join(cur))
    # mbox: a body line starting with "From " must be quoted
    return [(">" + line if line.startswith("From ") else line) for line in lines]


def date(rng, i):
    day = 1 + (i * 7) % 28
    return (
        f"{DAYS[i % 7]}, {day:02d} {MONTHS[i % 12]} {2015 + i % 10} "
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} "
        f"{rng.choice(['+0000', '+0200', '-0500', '+0530'])}"
    )


def message(rng, i):
    kind = i % 6
    subj_words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 7)))
    hdr = [
        f"From: {addr(rng)}",
        f"To: {', '.join(addr(rng) for _ in range(rng.randrange(1, 4)))}",
    ]
    if rng.random() < 0.3:
        hdr.append(f"Cc: {addr(rng)}")
    if kind == 4:
        hdr.append("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_?= " + subj_words)
    elif rng.random() < 0.2:
        hdr.append(f"Subject: Re: {subj_words}")
    else:
        hdr.append(f"Subject: {subj_words}")
    hdr.append(f"Date: {date(rng, i)}")
    hdr.append(f"Message-ID: <imaptest-stress-{i:05d}.{rng.randrange(10**9):09d}@gen.example>")
    if i > 0 and rng.random() < 0.3:
        hdr.append(f"In-Reply-To: <imaptest-stress-{rng.randrange(i):05d}@gen.example>")
    hdr.append("MIME-Version: 1.0")
    size_words = rng.choice([20, 60, 200, 800, 3000])
    body = []
    if kind in (0, 4):
        hdr.append("Content-Type: text/plain; charset=us-ascii")
        body = text(rng, size_words)
    elif kind == 1:
        hdr.append("Content-Type: text/plain; charset=utf-8")
        hdr.append("Content-Transfer-Encoding: quoted-printable")
        body = [line + " caf=C3=A9" for line in text(rng, size_words)]
    elif kind == 2:
        b = f"alt-{i}-b"
        hdr.append(f'Content-Type: multipart/alternative; boundary="{b}"')
        body = [
            "This is a multi-part message in MIME format.",
            "",
            f"--{b}",
            "Content-Type: text/plain; charset=us-ascii",
            "",
        ]
        body += text(rng, size_words)
        body += (
            ["", f"--{b}", "Content-Type: text/html; charset=us-ascii", "", "<html><body><p>"]
            + text(rng, size_words // 2)
            + ["</p></body></html>", f"--{b}--", ""]
        )
    elif kind == 3:
        b = f"mix-{i}-b"
        hdr.append(f'Content-Type: multipart/mixed; boundary="{b}"')
        blob = bytes(rng.randrange(256) for _ in range(rng.choice([100, 2000, 20000])))
        enc = base64.encodebytes(blob).decode().splitlines()
        body = ["", f"--{b}", "Content-Type: text/plain; charset=us-ascii", ""]
        body += text(rng, size_words)
        body += [
            "",
            f"--{b}",
            f'Content-Type: application/octet-stream; name="blob{i}.bin"',
            "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="blob{i}.bin"',
            "",
        ]
        body += enc + [f"--{b}--", ""]
    else:
        b = f"fwd-{i}-b"
        hdr.append(f'Content-Type: multipart/mixed; boundary="{b}"')
        body = (
            [
                "",
                f"--{b}",
                "Content-Type: text/plain",
                "",
                "Forwarded message below.",
                "",
                f"--{b}",
                "Content-Type: message/rfc822",
                "",
                f"From: {addr(rng)}",
                f"To: {addr(rng)}",
                f"Subject: inner {subj_words}",
                f"Date: {date(rng, i + 1)}",
                f"Message-ID: <imaptest-inner-{i:05d}@gen.example>",
                "",
            ]
            + text(rng, size_words // 2)
            + ["", f"--{b}--", ""]
        )
    return hdr + [""] + body


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 300
    rng = random.Random(20240611)
    out = []
    for i in range(count):
        out.append(f"From imaptest@gen.example {DAYS[i % 7]} {MONTHS[i % 12]}  1 12:00:00 2020")
        out.extend(message(rng, i))
        out.append("")
    with open(sys.argv[1], "w", newline="\r\n") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
