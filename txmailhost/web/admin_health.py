"""The admin console's health page: is everything listening, is there room, is mail moving.

- **Listeners**: each ``[listen]`` endpoint this server was built with, and the address it is
  bound to (the service's port, as ``service.Listener`` got it) or that it is not bound.
  With ``[server] workers`` the web runs in worker 0 only, so this is worker 0's view; the
  others adopt the same sockets from the supervisor.
- **Disk**: size and free space of the file system holding the data directory (mail, queue,
  accounts), and of ``DATA/mail`` and ``DATA/queue`` when another file system is mounted
  there; flagged below
  ``AdminSources.free_space_warning`` (10 %).
- **Relay queue**: the number of queued messages and the age of the oldest (queue ids are
  time-ordered, so the first id's envelope is the oldest: two file reads, whatever the size).
- **Worker processes**: each worker's control socket (``ops.control``) asked ``WHO``, as
  ``txmailhost who`` does: answering, with its open connections, or not.
- **TLS certificate**: subject, issuer and expiry of ``[tls] certificate``, and of each
  certificate of ``[tls] sni`` (a row for each host name); flagged when it expires within
  :data:`EXPIRY_WARNING_DAYS` days.

Every check is blocking (``statvfs``, file reads, a UNIX socket) and runs in the site's pool;
none of them can fail the page: a check that fails says why in its own row.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from txmailhost.web.admin_access import AdminSources, admin_only, sources
from txmailhost.web.context import Route, WebContext
from txmailhost.web.responses import Response

EXPIRY_WARNING_DAYS = 14
CONTROL_TIMEOUT = 2.0  # seconds a worker's control socket may take to answer


@dataclass(frozen=True)
class Check:
    """One row: what, its state in words, and whether that is fine."""

    name: str
    state: str
    good: bool


def _age(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole >= 86400:
        return f"{whole // 86400} d {whole % 86400 // 3600} h"
    if whole >= 3600:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    if whole >= 60:
        return f"{whole // 60} min"
    return f"{whole} s"


def listeners(console: AdminSources) -> list[Check]:
    found = []
    for listener in console.listeners:
        port = getattr(listener, "port", None)
        if port is None:
            found.append(Check(listener.label, f"not bound ({listener.description})", False))
            continue
        host = port.getHost()
        where = f"[{host.host}]" if ":" in host.host else host.host
        found.append(Check(listener.label, f"bound on {where}:{host.port}", True))
    return found


def _space(name: str, path: str, warning: float) -> Check:
    try:
        usage = shutil.disk_usage(path)
    except OSError as e:
        return Check(name, f"{path}: {e.strerror or e}", False)
    share = usage.free / usage.total if usage.total else 0.0
    state = (f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB "
             f"({share:.0%}) at {path}")  # fmt: skip
    return Check(name, state, share >= warning)


def disk(console: AdminSources) -> list[Check]:
    """The data directory's file system, and the mail's and the queue's when they are on
    another (a disk of their own mounted at ``DATA/mail`` or ``DATA/queue``)."""
    found, devices = [], set()
    for name, path in (("data directory", console.data_dir), *console.other_storage):
        try:
            device = os.stat(path).st_dev
        except OSError:
            device = None
        if device is not None and device in devices:
            continue
        devices.add(device)
        found.append(_space(name, path, console.free_space_warning))
    return found


def queue(spool: Any, now: float) -> Check:
    if spool is None:
        return Check("relay queue", "not run by this process", True)
    ids = spool.ids()
    if not ids:
        return Check("relay queue", "empty", True)
    for queue_id in ids:  # the first readable one: one may be delivered as we look
        try:
            oldest = spool.load(queue_id).arrival
        except (OSError, ValueError, TypeError, KeyError):
            continue
        waited = now - oldest
        messages = f"{len(ids)} message" + ("" if len(ids) == 1 else "s")
        state = f"{messages}, the oldest queued {_age(waited)} ago"
        return Check("relay queue", state, waited < 86400)
    return Check("relay queue", f"{len(ids)} messages", True)


def workers(console: AdminSources) -> list[Check]:
    if console.ask_control is None:
        return []
    found = []
    for slot, path in enumerate(console.control_sockets):
        name = f"worker {slot}" if console.workers > 1 else "server process"
        try:
            sessions = console.ask_control(path, "WHO", CONTROL_TIMEOUT)
        except (ConnectionError, OSError, ValueError) as e:
            found.append(Check(name, f"not answering ({e})", False))
            continue
        count = len(sessions) if isinstance(sessions, list) else 0
        found.append(Check(name, f"running, {count} open connections", True))
    return found


def _name(names: x509.Name) -> str:
    common = names.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else names.rfc4514_string()


def certificate(path: str, now: float, label: str = "TLS certificate") -> Check:
    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as e:
        return Check(label, f"{path}: cannot be read ({e})", False)
    expires = cert.not_valid_after_utc.timestamp()
    days = (expires - now) / 86400
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
    issuer = _name(cert.issuer)
    subject = _name(cert.subject)
    if days < 0:
        state = f"{subject} EXPIRED on {when} (issuer {issuer})"
    else:
        state = f"{subject}, expires {when}, in {int(days)} days (issuer {issuer})"
    return Check(label, state, days >= EXPIRY_WARNING_DAYS)


def _everything(console: AdminSources, spool: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "listeners": listeners(console),
        "system": [
            *disk(console),
            queue(spool, now),
            certificate(console.certificate, now),
            *(
                certificate(path, now, f"TLS certificate for {name}")
                for name, path in console.sni_certificates
            ),
        ],
        "workers": workers(console),
    }


async def health_page(ctx: WebContext) -> Response:
    console = sources(ctx)
    found = await ctx.services.in_thread(_everything, console, ctx.services.spool)
    checks = found["listeners"] + found["system"] + found["workers"]
    problems = sum(1 for check in checks if not check.good)
    return ctx.render("admin_health.html", problems=problems, **found)


ROUTES = [Route("GET", "/admin/health", admin_only(health_page))]
