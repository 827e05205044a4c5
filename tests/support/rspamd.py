"""A real rspamd (Debian's rspamd) for tests: its normal worker on a free loopback port, with a
minimal configuration written here. ``running_rspamd()`` yields the worker's URL, or skips the
test when rspamd is not installed or does not start.

The configuration keeps rspamd off the network and needs no Redis: only the ``regexp`` module
and the stock rules (``rules/rspamd.lua``, with the stock symbol scores of ``groups.conf``),
every other module left unconfigured (rspamd disables those), DNS pointed at a loopback port
where nothing answers, and the test patterns (GTUBE) enabled, as they are not by default.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

RSPAMD = shutil.which("rspamd") or (
    "/usr/bin/rspamd" if os.path.exists("/usr/bin/rspamd") else None
)
CONFDIR = "/etc/rspamd"
# Built from pieces so no filter flags this file: SpamAssassin's and rspamd's test string.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*" + b"GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(home: str, port: int) -> str:
    return f"""
options {{
  pidfile = "{home}/rspamd.pid";
  filters = "regexp";
  cache_file = "{home}/symbols.cache";
  history_file = "{home}/history";
  dynamic_conf = "{home}/dynamic";
  control_socket = "{home}/rspamd.sock mode=0600";
  hs_cache_dir = "{home}";
  url_tld = "/usr/share/rspamd/effective_tld_names.dat";
  enable_test_patterns = true;
  dns {{ nameserver = ["127.0.0.1:{free_port()}"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{home}/rspamd.log"; level = "warning"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 1; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
.include(try=true) "{CONFDIR}/groups.conf"
lua = "/usr/share/rspamd/rules/rspamd.lua";
modules {{ path = "/usr/share/rspamd/plugins"; }}
"""


@contextlib.contextmanager
def running_rspamd() -> Iterator[str]:
    if RSPAMD is None:
        pytest.skip("rspamd is not installed (Debian: rspamd)")
    home = tempfile.mkdtemp(prefix="txm-rspamd-", dir="/tmp")
    process = None
    try:
        # free_port() only finds a port free: a test beside (pytest-xdist) may bind it
        # first, and rspamd then exits with "Address already in use": start again
        for _attempt in range(5):
            process, url = _start(home)
            if url is not None:
                break
        else:
            pytest.skip(f"rspamd did not start: {_log_tail(home)}")
        yield url
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(home, ignore_errors=True)


def _start(home: str) -> tuple[subprocess.Popen, str | None]:
    """rspamd on a free port; its URL once ``/ping`` answers, None when its port was
    taken first (the process is then stopped). Skips the test for any other failure."""
    port = free_port()
    config = os.path.join(home, "rspamd.conf")
    pathlib.Path(config).write_text(_config(home, port))
    log = pathlib.Path(home, "rspamd.log")
    log.unlink(missing_ok=True)
    argv = [RSPAMD, "-f", "-c", config, f"--var=CONFDIR={CONFDIR}",
            f"--var=LOCAL_CONFDIR={home}", f"--var=DBDIR={home}", f"--var=RUNDIR={home}"]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--insecure")  # rspamd refuses root otherwise; the test's dir is root's
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                if reply.status == 200:
                    return process, url
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            process.wait()
            if "Address already in use" in _log_tail(home):
                return process, None
            pytest.skip(f"rspamd did not start: {_log_tail(home)}")
        time.sleep(0.2)


def _log_tail(home: str) -> str:
    log = pathlib.Path(home, "rspamd.log")
    return log.read_text(errors="replace")[-500:] if log.exists() else ""
