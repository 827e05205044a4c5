"""Message bodies in an S3-compatible object store, for the PostgreSQL store (``[store] blobs
= "s3"``).

Why: a message body is written once and read whole or in ranges, never changed; an object
store keeps such bytes cheaper and grows further than database rows, while PostgreSQL keeps
what must be transactional (UIDs, flags, MODSEQs). Stalwart does the same.

The promise (DESIGN.md, "nothing accepted is ever lost") and how it is kept:

- an object's key is a fresh random UUID (``new_key``), never derived from its content, so an
  upload can neither overwrite nor be mistaken for another message's object;
- ``upload`` returns only once the store acknowledged the object (the PUT, or the multipart
  upload's completion); the PostgreSQL store commits the row naming it only after that. A
  crash in between leaves an object no row names: an orphan, never a row without its object;
- objects are deleted only after the transaction deleting their last row committed; a
  deletion that fails leaves an orphan too. ``blobgc.py`` (``txmailhost db gc``) removes
  orphans older than a grace period.

Bodies are streamed: a large message goes up as a multipart upload in parts of ``PART``
octets and comes down in ``READ`` pieces into the caller's file, so no more than one part is
in memory at once, whatever the message's size.

boto3 (the ``s3`` extra) does the signing (SigV4), retries and connection pooling; it is
imported when the first ``S3Blobs`` is made, so an installation without S3 never needs it. Its
calls block: the PostgreSQL store makes them in its thread pool, never on the reactor. One
client serves every thread (boto3 clients are thread-safe; sessions are not).

Credentials come from ``[store] s3_access_key`` and ``s3_secret_key_file`` or, when those are
empty, from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``~/.aws/credentials``, an instance role). The secret is never logged nor shown in ``repr``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from twisted.logger import Logger

from txmailhost.store.interfaces import StoreError

log = Logger(namespace="txmailhost.store")

PART = 5 << 20  # octets per multipart part: S3's least (but for the last part)
READ = 256 << 10  # octets per read of a downloaded body
_DELETE_BATCH = 1000  # keys per DeleteObjects request: S3's most
_KEY = re.compile(r"[0-9a-f]{32}\Z")  # what new_key makes, after the prefix
_FETCHERS = 8  # GETs at once for read_many (an IMAP batch of small messages, a SEARCH)


class BlobStoreUnavailable(StoreError):
    """The object store could not be reached or refused the request: retrying may help (the
    SMTP delivery is retried from the queue, IMAP answers NO)."""


class MissingBlob(StoreError):
    """A row names an object the store does not have: someone deleted it behind our back."""

    permanent = True


@dataclass(frozen=True)
class S3Settings:
    """Where the bodies go; ``[store] s3_*`` in the config. Empty strings: boto3's defaults
    (AWS's endpoint for the region; credentials from the environment)."""

    bucket: str
    endpoint: str = ""
    region: str = ""
    prefix: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)


def settings_from(store_config: Any) -> S3Settings | None:
    """The settings ``[store]`` gives, or None when bodies stay in PostgreSQL (``blobs =
    "postgres"``). Reads the secret key's file; an unreadable file is a StoreError naming it."""
    if getattr(store_config, "blobs", "postgres") != "s3":
        return None
    secret = ""
    if store_config.s3_secret_key_file:
        try:
            with open(store_config.s3_secret_key_file, encoding="utf-8") as f:
                secret = f.readline().strip()
        except OSError as e:
            raise StoreError(
                f"store.s3_secret_key_file: can't read {store_config.s3_secret_key_file!r}:"
                f" {e.strerror}"
            ) from None
    return S3Settings(
        bucket=store_config.s3_bucket,
        endpoint=store_config.s3_endpoint,
        region=store_config.s3_region,
        prefix=store_config.s3_prefix,
        access_key=store_config.s3_access_key,
        secret_key=secret,
    )


def from_config(store_config: Any) -> S3Blobs | None:
    """The ``S3Blobs`` of ``[store]``, or None when bodies stay in PostgreSQL."""
    settings = settings_from(store_config)
    return S3Blobs(settings) if settings is not None else None


class S3Blobs:
    """One bucket (and key prefix) of an S3-compatible store; every call blocks."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client = _client(settings)
        self._errors = _error_types()
        self._fetchers: ThreadPoolExecutor | None = None
        self._fetchers_lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.settings.endpoint or "AWS"
        return f"<S3Blobs {where} bucket={self.bucket!r} prefix={self.prefix!r}>"

    def check(self) -> None:
        """Fail now, saying why, when the bucket can't be reached (a wrong endpoint, bucket
        name or credentials): at the server's start rather than at its first delivery."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as e:
            where = self.settings.endpoint or "AWS S3"
            raise BlobStoreUnavailable(
                f"object store: bucket {self.bucket!r} at {where} unusable: {e}"
            ) from None

    def new_key(self) -> str:
        """A key no other object has or will have: the prefix and a random UUID."""
        return self.prefix + uuid.uuid4().hex

    def is_ours(self, key: str) -> bool:
        """Whether ``key`` has the shape ``new_key`` makes (garbage collection touches no
        other object, so the bucket may be shared)."""
        return key.startswith(self.prefix) and bool(_KEY.match(key, len(self.prefix)))

    # -- writing ---------------------------------------------------------------------------

    def upload(self, pieces: Iterable[bytes]) -> tuple[str, int]:
        """Store the concatenation of ``pieces`` as a new object; (key, octets) once the store
        has acknowledged it. Up to ``PART`` octets go in one PUT; more, as a multipart upload
        of ``PART``-sized parts (aborted if anything fails, so no parts are left behind)."""
        key = self.new_key()
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            for piece in pieces:
                buffer += piece
                size += len(piece)
                while len(buffer) > PART:  # keep the last bytes: the final part may be short
                    if upload_id is None:
                        upload_id = self._call(
                            "create_multipart_upload", Bucket=self.bucket, Key=key
                        )["UploadId"]
                    with memoryview(buffer) as view:  # one copy of the part, not two
                        part = bytes(view[:PART])
                    del buffer[:PART]
                    parts.append(self._part(key, upload_id, len(parts) + 1, part))
                    del part
            if upload_id is None:
                self._call("put_object", Bucket=self.bucket, Key=key, Body=bytes(buffer))
                return key, size
            parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buffer)))
            self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return key, size
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        reply = self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # its parts are reaped by blobgc (stale multipart uploads)
            log.warn("could not abort the upload of {key}: {error}", key=key, error=str(e))

    # -- reading ---------------------------------------------------------------------------

    def read_into(
        self, key: str, file: BinaryIO, offset: int = 0, length: int | None = None
    ) -> int:
        """Stream the object (or ``length`` octets of it from ``offset``: a ranged GET) into
        ``file`` ``READ`` octets at a time; octets written (fewer past the object's end)."""
        ranged: dict[str, str] = {}
        if length is not None:
            if length <= 0:
                return 0
            ranged["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            ranged["Range"] = f"bytes={offset}-"
        try:
            reply = self._call("get_object", Bucket=self.bucket, Key=key, **ranged)
        except BlobStoreUnavailable as e:
            if ranged and _code(e.__cause__) == "InvalidRange":  # from past the end: nothing
                return 0
            raise
        written = 0
        body = reply["Body"]
        try:
            for piece in body.iter_chunks(READ):
                file.write(piece)
                written += len(piece)
        except self._errors as e:
            raise BlobStoreUnavailable(f"object store read of {key} failed: {e}") from e
        finally:
            body.close()
        return written

    def read(self, key: str) -> bytes:
        """The whole object (for small messages: callers ask for it by size)."""
        reply = self._call("get_object", Bucket=self.bucket, Key=key)
        try:
            return reply["Body"].read()
        except self._errors as e:
            raise BlobStoreUnavailable(f"object store read of {key} failed: {e}") from e

    def read_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Several whole objects (small messages: an IMAP FETCH or SEARCH batch), up to
        ``_FETCHERS`` GETs at once: each costs a round trip, and one after another they
        would add up. The GETs run in threads of this object's own, started by the caller's
        (a store pool thread, never the reactor's), which waits for them all."""
        wanted = list(dict.fromkeys(keys))
        if len(wanted) <= 1:
            return {key: self.read(key) for key in wanted}
        with self._fetchers_lock:
            if self._fetchers is None:
                self._fetchers = ThreadPoolExecutor(_FETCHERS, thread_name_prefix="txmh-s3")
        return dict(zip(wanted, self._fetchers.map(self.read, wanted), strict=True))

    def close(self) -> None:
        """Stop the threads of ``read_many`` (at shutdown)."""
        with self._fetchers_lock:
            fetchers, self._fetchers = self._fetchers, None
        if fetchers is not None:
            fetchers.shutdown(wait=False)

    # -- deleting and listing ----------------------------------------------------------------

    def delete(self, keys: Iterable[str]) -> None:
        """Delete the objects (absent ones are no error), ``_DELETE_BATCH`` per request."""
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _DELETE_BATCH):
            batch = wanted[start : start + _DELETE_BATCH]
            reply = self._call(
                "delete_objects",
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise BlobStoreUnavailable(
                    f"object store kept {len(reply['Errors'])} objects it was asked to delete"
                    f" ({first.get('Key')}: {first.get('Code')})"
                )

    def listing(self) -> Iterator[list[tuple[str, datetime]]]:
        """Our objects (``is_ours``), a page at a time: [(key, last modified)]."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                yield [
                    (o["Key"], o["LastModified"])
                    for o in page.get("Contents", ())
                    if self.is_ours(o["Key"])
                ]
        except self._errors as e:
            raise BlobStoreUnavailable(f"object store listing failed: {e}") from e

    def stale_uploads(self, before: datetime) -> list[tuple[str, str]]:
        """Multipart uploads of ours begun before ``before`` and never finished (a node that
        died mid-upload): [(key, upload id)]."""
        found: list[tuple[str, str]] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", ()):
                    if self.is_ours(upload["Key"]) and upload["Initiated"] < before:
                        found.append((upload["Key"], upload["UploadId"]))
        except self._errors as e:
            raise BlobStoreUnavailable(f"object store listing failed: {e}") from e
        return found

    def abort(self, key: str, upload_id: str) -> None:
        self._abort(key, upload_id)

    def _call(self, operation: str, **params: Any) -> Any:
        """One request; boto3's errors become the store's temporary or permanent ones."""
        try:
            return getattr(self._client, operation)(**params)
        except self._errors as e:
            if _code(e) in ("NoSuchKey", "404") and operation == "get_object":
                raise MissingBlob(f"object {params.get('Key')} is missing from the store") from e
            raise BlobStoreUnavailable(f"object store unavailable ({operation}): {e}") from e


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _error_types() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _client(settings: S3Settings) -> Any:
    """A boto3 S3 client for ``settings``: its own session (sessions are not thread-safe),
    path-style addressing when an endpoint is given (what MinIO, Ceph and moto expect)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StoreError('[store] blobs = "s3" needs boto3: pip install "txmailhost[s3]"') from None
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key or None,
        aws_secret_access_key=settings.secret_key or None,
        region_name=settings.region or None,
    )
    config = Config(
        s3={"addressing_style": "path"} if settings.endpoint else {},
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=64,  # more than [store] threads may ever be
    )
    return session.client("s3", endpoint_url=settings.endpoint or None, config=config)
