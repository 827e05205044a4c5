"""twistd glue: ``twistd txmailhost [--config FILE] [--data DIR]``.

twistd runs a plugin in this order: ``makeService`` (as the invoking user: config, data
directory, thread pools, TLS), daemonising unless ``-n``, ``privilegedStartService`` (still
that user: the listeners bind, so root can bind ports below 1024), dropping to ``--uid`` and
``--gid``, then ``startService``. What the server creates on disk before the drop is created
as the ``--uid`` user (``make_service``), so the server can still write it afterwards.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from twisted.application.service import IService
from twisted.python import usage


class Options(usage.Options):
    optParameters = [
        ["data", "d", "txmailhost-data", "Data directory (config, accounts, mail, queue, TLS)."],
        ["config", "c", None, "Config file (default: DATA/txmailhost.toml, created if missing)."],
    ]


def makeService(options: Options) -> IService:
    from txmailhost.service import make_service
    from txmailhost.workers.supervisor import build_supervisor

    twistd: Any = getattr(options, "parent", None) or {}
    _report_startup_errors_in_one_line()
    from txmailhost.ops.eventlog import install_octet_escaping

    install_octet_escaping()  # before twistd's log file observer: see its docstring
    from twisted.internet import reactor

    from txmailhost.datalock import note_pid
    from txmailhost.service import freeze_startup_heap

    reactor.callWhenRunning(freeze_startup_heap)  # type: ignore[attr-defined]
    reactor.callWhenRunning(note_pid)  # type: ignore[attr-defined] - daemonised: a new pid
    return make_service(
        data_dir=options["data"],
        config_file=options["config"],
        run_as=(twistd.get("uid"), twistd.get("gid")),
        supervise=build_supervisor,
    )


def _report_startup_errors_in_one_line() -> None:
    """A listener that can't bind fails twistd's start with ``StartupError``; say it in one line.

    twistd lets the exception out of ``privilegedStartService`` (after handing it to a
    waiting parent when daemonising, which prints it and exits 1), so it ends the process
    through ``sys.excepthook`` with status 1. Its message says everything, and is already in
    the log: a traceback would only hide it.
    """
    from txmailhost.service import StartupError

    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if isinstance(error, StartupError):
            stream = sys.__stderr__  # sys.stderr goes to the log once twistd logs
            if stream is not None:
                print(f"txmailhost: {error}", file=stream)
        else:
            previous(kind, error, tb)

    sys.excepthook = hook
