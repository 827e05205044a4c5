"""twistd glue: ``twistd txmailhost [--config FILE] [--data DIR]``."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage


class Options(usage.Options):
    optParameters = [
        ["data", "d", "txmailhost-data", "Data directory (config, accounts, mail, queue, TLS)."],
        ["config", "c", None, "Config file (default: DATA/txmailhost.toml, created if missing)."],
    ]


def makeService(options: Options) -> IService:
    from txmailhost.service import make_service

    return make_service(data_dir=options["data"], config_file=options["config"])
