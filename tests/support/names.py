"""``NamesServer``: start the twisted.names test server (``names_server.py``) and write its zone.

    names = NamesServer(tmp_path).start()
    names.add("example.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    resolver = MailAuthResolver([names.address], timeout=2)

Records are written to a JSON file the server reads per query, so adding a record takes
effect at once (mind the resolver's cache: add before asking, or use a fresh resolver).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class NamesServer:
    def __init__(self, directory: Path | str) -> None:
        self.zone_path = os.path.join(directory, "zone.json")
        self.zone: dict[str, list[Any]] = {"records": [], "silent": [], "servfail": []}
        self._process: subprocess.Popen[str] | None = None
        self.port = 0
        self._write()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``relay.nameservers`` takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> NamesServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.names_server", self.zone_path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"test DNS server did not start: {line!r}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def add(self, name: str, rdtype: str, *values: Any) -> NamesServer:
        for value in values:
            self.zone["records"].append([name, rdtype.upper(), value])
        self._write()
        return self

    def remove(self, name: str, rdtype: str | None = None) -> NamesServer:
        self.zone["records"] = [
            r for r in self.zone["records"]
            if not (r[0] == name and (rdtype is None or r[1] == rdtype.upper()))
        ]  # fmt: skip
        self._write()
        return self

    def fail(self, name: str, how: str) -> NamesServer:
        """``how``: "silent" (never answers) or "servfail"."""
        self.zone[how].append(name.lower().rstrip("."))
        self._write()
        return self

    def _write(self) -> None:
        temporary = self.zone_path + ".new"
        with open(temporary, "w") as f:
            json.dump(self.zone, f)
        os.replace(temporary, self.zone_path)
