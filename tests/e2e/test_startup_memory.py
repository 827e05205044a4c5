"""What a started server holds before any mail: the features it doesn't serve stay unloaded."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.support.server import ServerProcess

# The webmail's native modules (its HTML sanitizer, Jinja2's escaping): mapped into the
# process once imported, so /proc/PID/maps shows from outside what the server loaded.
_WEBMAIL_LIBRARIES = ("nh3", "markupsafe")


def _loaded_webmail_libraries(proc: ServerProcess) -> set[str]:
    assert proc.process is not None
    maps = Path(f"/proc/{proc.process.pid}/maps").read_text()
    return {name for name in _WEBMAIL_LIBRARIES if f"/site-packages/{name}/" in maps}


def _started(template: str, data_dir: Path, web: bool) -> ServerProcess:
    shutil.copytree(template, data_dir, symlinks=True)
    proc = ServerProcess(str(data_dir))
    proc.write_config()
    if not web:
        config = data_dir / "txmailhost.toml"
        text = re.sub(r'^(web|web_redirect) = ".*"$', r'\1 = ""', config.read_text(), flags=re.M)
        config.write_text(text)
    return proc.start()


def test_a_server_without_the_web_listener_does_not_load_the_webmail(server_template, tmp_path):
    """The webmail's modules and theirs (Jinja2, the HTML sanitizer, the form parser; 54
    modules, 3 MiB of heap, 4.6 MiB of the process) were imported by every server, webmail
    listener or not (docs/benchmarks-smtp.rst). A server that serves it loads them."""
    without = _started(server_template, tmp_path / "without", web=False)
    try:
        assert _loaded_webmail_libraries(without) == set()
    finally:
        without.stop()
    with_web = _started(server_template, tmp_path / "with", web=True)
    try:
        assert "web" in with_web.ports
        assert _loaded_webmail_libraries(with_web) == set(_WEBMAIL_LIBRARIES)
    finally:
        with_web.stop()
