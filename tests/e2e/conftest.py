import pytest

from tests.support.server import ServerProcess

PASSWORD = "secret-pw"


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess(str(tmp_path / "data")).start()
    proc.add_user("alice@example.test", PASSWORD)
    proc.add_user("bob@example.test", PASSWORD)
    yield proc
    proc.stop()
