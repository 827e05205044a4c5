"""Start the real server (``twistd -n txmailhost``) in a subprocess on loopback ephemeral ports.

The config gives every listener port 0; the ports actually bound are read back from the log
lines ``txmailhost LABEL listening on HOST:PORT``. The admin CLI is run the way an
administrator runs it, as a separate process against the same data directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

_LISTENING = re.compile(r"txmailhost (\w+) listening on ([\d.:a-f]+):(\d+)")
BIN = os.path.dirname(sys.executable)
LABELS = (
    "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "metrics",
    "managesieve", "web", "web_redirect",
)  # fmt: skip


class ServerProcess:
    def __init__(
        self, data_dir: str, extra_config: str = "", workers: int = 1, reactor: str | None = None
    ) -> None:
        self.data_dir = str(data_dir)
        # argv in front of twistd's (tests/support/mounts.py: a folder on a disk of its own)
        self.prefix: list[str] = []
        self.reactor = reactor  # twistd --reactor (bench/pg_driver.py: "asyncio"); None: default
        self.log_path = self.data_dir + ".log"
        self.extra_config = extra_config
        self.workers = workers  # [server] workers: > 1 runs a supervisor and worker processes
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        # Domains known to be served, so that add_user runs `domain add` once per domain, not
        # `domain list` before every user: each CLI call is a process of its own.
        self.domains: set[str] = set()

    def write_config(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        listen = "\n".join(f'{label} = "tcp:0:interface=127.0.0.1"' for label in LABELS)
        with open(os.path.join(self.data_dir, "txmailhost.toml"), "w") as f:
            # One process unless a test asks for workers: the default is one per core.
            workers = f"workers = {self.workers}\n"
            f.write(f'[server]\nhostname = "mx.example.test"\n{workers}\n[listen]\n{listen}\n\n')
            if "[mailauth]" not in self.extra_config:
                # SPF/DKIM/DMARC checks ask DNS: only the tests that serve it turn them on.
                f.write("[mailauth]\ncheck_inbound = false\n\n")
            f.write(self.extra_config)

    def start(self, timeout: float = 30) -> ServerProcess:
        if not os.path.exists(os.path.join(self.data_dir, "txmailhost.toml")):
            self.write_config()
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.process = subprocess.Popen(
            [
                *self.prefix,
                os.path.join(BIN, "twistd"),
                "-n",
                "--pidfile=",
                f"--logfile={self.log_path}",
                *([f"--reactor={self.reactor}"] if self.reactor else []),
                "txmailhost",
                "--data",
                self.data_dir,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        with open(os.path.join(self.data_dir, "txmailhost.toml")) as f:
            config = f.read()
        # every listener the config gives a TCP endpoint has logged its port
        wanted = {"smtp", "pop3", "imap"} | {
            label for label in LABELS if re.search(rf'^{label} = "tcp', config, re.M)
        }
        while time.time() < deadline:
            if self.process.poll() is not None:
                out = (
                    self.process.stdout.read().decode(errors="replace")
                    if self.process.stdout
                    else ""
                )
                raise RuntimeError(
                    f"server exited ({self.process.returncode}): {out}\n{self.log()}"
                )
            text = self.log()[offset:]
            self.ports = {m[1]: int(m[3]) for m in _LISTENING.finditer(text)}
            last = f"worker {self.workers - 1} of {self.workers} ready"
            if wanted <= set(self.ports) and (self.workers == 1 or last in text):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not listen in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def cli(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [os.path.join(BIN, "txmailhost"), "--data", self.data_dir, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"txmailhost {' '.join(args)} failed: {result.stderr}")
        return result

    def add_user(self, address: str, password: str) -> None:
        """Add the account, and its domain first unless this process added it already: N
        users of one domain cost N + 1 CLI calls. A domain added otherwise (by a test's own
        ``cli("domain", "add", ...)``, or in a copied data directory) makes ``domain add``
        fail; then the list says whether it is there. One removed since (``domain del``)
        makes ``user add`` fail, and it is added again."""
        domain = address.rpartition("@")[2]
        self._serve(domain)
        added = self._user_add(address, password)
        if added.returncode != 0 and f"domain {domain.lower()} is not served" in added.stderr:
            self.domains.discard(domain)
            self._serve(domain)
            added = self._user_add(address, password)
        if added.returncode != 0:
            raise AssertionError(f"txmailhost user add {address} failed: {added.stderr}")

    def _serve(self, domain: str) -> None:
        if domain in self.domains:
            return
        added = self.cli("domain", "add", domain, check=False)
        if added.returncode != 0 and domain not in self.cli("domain", "list").stdout.split():
            raise AssertionError(f"txmailhost domain add {domain} failed: {added.stderr}")
        self.domains.add(domain)

    def _user_add(self, address: str, password: str) -> subprocess.CompletedProcess:
        return self.cli(
            "user", "add", address, "--password-file", "-", stdin=password + "\n", check=False
        )
