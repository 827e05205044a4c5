"""``bench.spam_anchor``: Postfix with and without rspamd as its milter, run tiny.

Not a timing: that the bench starts Postfix twice, rspamd offline (stock config, loopback
DNS, its own Redis), trains it, and prints the figures ``bench.spam_throughput`` prints,
having checked that rspamd scanned every message of the "on" runs. The corpus is a few
made-up messages in the layout of ``bench.spam_corpus``'s cache, so nothing is fetched.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from pathlib import Path

import pytest

from bench import smtp_load, spam_anchor
from bench.server import listens, process_tree

pytestmark = pytest.mark.slow


def _corpus(cache: Path, count: int) -> None:
    for group, words in (("easy-ham-2", "meeting notes attached"), ("spam-2", "cheap pills now")):
        folder = cache / "package" / "data" / group
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{i:05}.txt").write_text(
                f"From: sender{i}@example.org\nTo: u1@bench.test\nSubject: {words} {i}\n"
                f"Message-ID: <{group}.{i}@example.org>\n\n{words} number {i}\n.starts with a dot\n"
            )


@pytest.mark.parametrize("milter", ["inet", "unix"])
def test_the_anchor_measures_postfix_with_and_without_rspamd(tmp_path: Path, capsys, milter):
    if why := spam_anchor.unavailable():
        pytest.skip(why)
    _corpus(tmp_path, 8)
    argv = ["-n", "24", "-c", "4", "--repeat", "1", "--trained", "3", "--warmup", "4"]
    argv += ["--unix-milter"] if milter == "unix" else []
    assert spam_anchor.main([*argv, "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"milter {milter}:" in out
    assert "sending 10 corpus messages" in out
    assert re.search(r"Postfix off: +\d+\.\d msgs/s", out)
    assert re.search(r"Postfix on : +\d+\.\d msgs/s", out)
    assert re.search(r"on is lower by -?\d+\.\d% \(median of pairs", out)
    cpu = re.findall(r"CPU a message: [\d.]+ ms \(the machine\), Postfix [\d.]+ ms.*", out)
    on_runs = [line for line in cpu if re.search(r"rspamd [\d.]+ ms, Redis [\d.]+ ms", line)]
    assert len(cpu) == 3 and len(on_runs) == 2  # "off", the warm-up and the "on" run
    scanned = re.search(r"rspamd scanned (\d+)", on_runs[-1])
    assert scanned and int(scanned.group(1)) >= 24


def test_a_5xx_after_data_is_counted_as_refused_not_as_a_broken_session():
    """rspamd's "reject" comes back through Postfix as 554 after the message's DATA: the
    bench counts it as handled, and needs it told apart from a session that broke."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test\r\n")
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(b"554 5.7.1 Spam message rejected\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data = True
                writer.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
        writer.close()

    async def run() -> smtp_load.SmtpResult:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            load = smtp_load.SmtpLoad("127.0.0.1", port, 5, connections=1, bodies=(b"x\r\n",))
            return await smtp_load.run(load)

    result = asyncio.run(run())
    assert (result.accepted, result.failed, result.refused) == (0, 5, 5)


def test_the_loopback_dns_server_answers_every_query_nxdomain_with_its_question():
    import dns.flags
    import dns.message
    import dns.opcode
    import dns.rcode

    from bench import nxdomain_server

    query = dns.message.make_query("zen.spamhaus.org.2.0.0.127", "A", use_edns=0)
    reply = dns.message.from_wire(nxdomain_server.answer(query.to_wire()))
    assert reply.id == query.id and reply.flags & dns.flags.QR
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.question == query.question
    assert not reply.answer
    notify = dns.message.make_query("example.org", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(nxdomain_server.answer(notify.to_wire())).rcode() == 4
    assert nxdomain_server.answer(reply.to_wire()) is None  # a reply gets none: no loops
    assert nxdomain_server.answer(query.to_wire()[:20]) is None  # cut short


def test_a_server_whose_port_a_stranger_took_first_is_started_again_on_another(
    tmp_path: Path, monkeypatch
):
    """``free_port`` finds a port free only when asked; a test beside (pytest-xdist) may bind
    it first. Redis then exits, and the stranger's listener must not pass for Redis's."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: redis-server)")
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        ports = iter([taken])
        free = spam_anchor.free_port
        monkeypatch.setattr(spam_anchor, "free_port", lambda: next(ports, None) or free())
        with spam_anchor.redis(tmp_path) as (port, server):
            assert port != taken
            assert listens(process_tree(server.pid), port)
            assert not listens(process_tree(server.pid), taken)
