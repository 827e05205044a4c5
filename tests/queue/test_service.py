"""``build_queue``: the queue as the server wires it, from a real config and data directory;
its DSNs go through ``submit`` (``txmailhost.delivery``)."""

from __future__ import annotations

import os

from twisted.python.threadpool import ThreadPool

from tests.queue.support import MESSAGE
from tests.relay.conftest import Net
from txmailhost.accounts.db import AccountsDB
from txmailhost.config import load_config
from txmailhost.datadir import ensure_data_dir
from txmailhost.delivery.incoming import IncomingSpool
from txmailhost.delivery.submission import Submission
from txmailhost.queue.service import ReturnToSender, build_queue
from txmailhost.routing import Router
from txmailhost.store.maildir import MaildirStore


def test_built_queue_spools_and_an_admin_bounce_reaches_the_local_senders_inbox(tmp_path):
    import twisted.mail.imap4  # noqa: F401 - the imap4-utf-7 codec Maildir++ names use

    data = str(tmp_path / "data")
    ensure_data_dir(data)
    with open(os.path.join(data, "txmailhost.toml"), "w") as f:
        f.write('[relay]\nnameservers = ["127.0.0.1:9"]\ndns_timeout = 1\n')
    config = load_config(data)
    accounts = AccountsDB(config.accounts_path)
    accounts.add_domain("example.test")
    accounts.add_user("alice@example.test", "secret-pw")
    net = Net()
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-storage")
    pool.start()
    try:
        store = MaildirStore(config.mail_root, net.reactor, pool)
        net.run(store.provision("alice@example.test"))
        router = Router(accounts, net.reactor, pool)
        queue, service = build_queue(config, net.reactor, pool)
        spool = IncomingSpool(os.path.join(data, "queue", "tmp"), net.reactor, pool)
        queue.return_to_sender = ReturnToSender(router, Submission(store, spool, queue=queue))
        service.startService()
        source = tmp_path / "data" / "queue" / "tmp" / "INCOMINGX1"
        source.write_bytes(MESSAGE)
        queue_id = net.run(
            queue.submit("alice@example.test", ["carol@remote.invalid"], str(source))
        )
        assert os.path.exists(os.path.join(data, "queue", "env", queue_id + ".json"))
        queue.spool.request("bounce", queue_id)
        inbox = os.path.join(config.mail_root, "example.test", "alice", "new")

        async def bounced() -> None:
            from twisted.internet.task import deferLater

            for _ in range(100):
                if os.path.isdir(inbox) and os.listdir(inbox):
                    return
                await deferLater(net.reactor, 0.05, lambda: None)

        net.run(bounced(), timeout=15)
        [name] = os.listdir(inbox)
        with open(os.path.join(inbox, name), "rb") as f:
            dsn = f.read()
        assert b"multipart/report" in dsn and b"Status: 5.0.0" in dsn
        assert b"carol@remote.invalid" in dsn
        net.run(service.stopService())
    finally:
        pool.stop()
        net.close()


def test_smarthost_password_is_read_from_its_file(tmp_path):
    from txmailhost.queue.service import _smarthost

    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    data = str(tmp_path / "data")
    ensure_data_dir(data)
    with open(os.path.join(data, "txmailhost.toml"), "w") as f:
        f.write(
            '[relay]\nsmarthost = "relay.example.net"\nsmarthost_username = "me"\n'
            f'smarthost_password_file = "{secret}"\n'
        )
    smarthost = _smarthost(load_config(data).relay)
    assert (smarthost.host, smarthost.port, smarthost.tls) == ("relay.example.net", 587, "required")
    assert smarthost.credentials == ("me", "s3cret")
