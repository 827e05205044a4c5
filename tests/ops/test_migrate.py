"""Reading Dovecot's and Postfix's files for ``txmailhost migrate``."""

from __future__ import annotations

from pathlib import Path

from txmailhost.cli import main
from txmailhost.ops.migrate import messages_of, read_alias_map, read_keywords, read_uidlist


def maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    return path


def test_uidlist_version_3_and_keywords_give_uids_and_flags(tmp_path: Path) -> None:
    box = maildir(tmp_path / "box")
    (box / "dovecot-uidlist").write_text(
        "3 V1700000000 N12 G0123456789abcdef\n"
        "4 W120 S118 :1700000001.M1P1.host,S=118,W=120\n"
        "9 :1700000002.M2P1.host\n"
    )
    (box / "dovecot-keywords").write_text("0 $Important\n1 Customer\n")
    (box / "cur" / "1700000001.M1P1.host,S=118,W=120:2,RSb").write_bytes(b"Subject: a\n\nx\n")
    (box / "cur" / "1700000002.M2P1.host:2,Fa").write_bytes(b"Subject: b\n\ny\n")
    (box / "new" / "1700000003.M3P1.host").write_bytes(b"Subject: c\n\nz\n")  # no UID yet
    uidlist = read_uidlist(str(box))
    assert (uidlist.uidvalidity, uidlist.uidnext) == (1700000000, 12)
    assert read_keywords(str(box)) == {"a": "$Important", "b": "Customer"}
    validity, uidnext, messages = messages_of(str(box), uidlist)
    assert validity == 1700000000 and uidnext == 13
    assert [(m.uid, sorted(m.flags)) for m in messages] == [
        (4, ["Customer", "\\Answered", "\\Seen"]),
        (9, ["$Important", "\\Flagged"]),
        (12, []),
    ]
    assert messages[2].source.read() == b"Subject: c\n\nz\n"


def test_uidlist_version_1(tmp_path: Path) -> None:
    box = maildir(tmp_path / "old")
    (box / "dovecot-uidlist").write_text("1 1100000000 5\n2 1100000001.M1.host\n")
    uidlist = read_uidlist(str(box))
    assert (uidlist.uidvalidity, uidlist.uidnext, uidlist.uids) == (
        1100000000, 5, {"1100000001.M1.host": 2},
    )  # fmt: skip
    assert read_uidlist(str(tmp_path)) is None


def test_postfix_alias_map_with_comments_and_continuations(tmp_path: Path) -> None:
    source = tmp_path / "virtual"
    source.write_text(
        "# virtual_alias_maps\n"
        "info@example.test   alice@example.test, bob@example.test\n"
        "sales@example.test  alice@example.test\n"
        "    carol@elsewhere.test\n"
        "\n"
    )
    assert read_alias_map(str(source)) == [
        ("info@example.test", ["alice@example.test", "bob@example.test"]),
        ("sales@example.test", ["alice@example.test", "carol@elsewhere.test"]),
    ]


def test_migrate_postfix_aliases_adds_them(tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "data")
    assert main(["--data", data, "init", "--hostname", "mx.example.test"]) == 0
    assert main(["--data", data, "domain", "add", "example.test"]) == 0
    source = tmp_path / "virtual"
    source.write_text("info@example.test  someone@elsewhere.test\nbad@other.test x@y.test\n")
    capsys.readouterr()
    assert main(["--data", data, "migrate", "postfix-aliases", str(source)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "info@example.test -> someone@elsewhere.test"
    assert out[1].startswith("bad@other.test -> x@y.test: skipped: ")
    assert main(["--data", data, "alias", "list"]) == 0
    assert "info@example.test" in capsys.readouterr().out
