"""A throwaway S3 server for the tests: moto's, started by the tests on loopback.

Why a server and not moto's in-process mock: the store talks to S3 over HTTP with boto3, as it
would to AWS or MinIO (signing, multipart, ranged reads, errors), and a server in a child
process keeps the test's own memory and GIL apart from it (the large-message test measures the
store's memory). One server per test process, on 127.0.0.1 and a port the kernel picks; one
fresh bucket per test.

Skips cleanly when boto3 or moto is not installed (the ``test`` extra has both).
"""

from __future__ import annotations

import atexit
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

ACCESS_KEY = "txmh-test-access"
SECRET_KEY = "txmh-test-secret"
REGION = "us-east-1"

# The child: moto's threaded server on an ephemeral port, which it prints; it stops when the
# test process closes its standard input (or dies).
_CHILD = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


def available() -> str | None:
    """Why S3 tests can't run here, or None when they can."""
    try:
        import boto3  # noqa: F401
        import flask  # noqa: F401
        import moto  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install -e '.[test]')"
    return None


class S3Server:
    """One running moto server; ``bucket()`` makes an empty bucket and returns its name."""

    def __init__(self) -> None:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("moto's S3 server did not start")
        self.port = int(line)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._names = itertools.count(1)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def bucket(self) -> str:
        name = f"txmh-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, prefix: str = ""):
        from txmailhost.store.s3blobs import S3Settings

        return S3Settings(
            bucket=bucket,
            endpoint=self.endpoint,
            region=REGION,
            prefix=prefix,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
        )

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket."""
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [o["Key"] for o in page.get("Contents", ())]
        return found

    def stop(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_shared: list[S3Server] = []


def shared_s3() -> S3Server:
    """The test process's one server, started on first use; skips when moto is absent."""
    why = available()
    if why is not None:
        pytest.skip(why)
    if not _shared:
        server = S3Server()
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0]


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    return shared_s3()


@pytest.fixture
def s3_blobs(s3_server: S3Server) -> Iterator:
    """An ``S3Blobs`` on a fresh bucket of the test process's server."""
    from txmailhost.store.s3blobs import S3Blobs

    yield S3Blobs(s3_server.settings(s3_server.bucket()))
