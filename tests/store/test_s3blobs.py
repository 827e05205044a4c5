"""``[store] blobs = "s3"`` settings: what the config gives the object store, and the secret
kept out of sight. (What the store does with it is tests/store/test_postgres_s3.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from txmailhost.config import StoreConfig
from txmailhost.store.interfaces import StoreError
from txmailhost.store.s3blobs import settings_from

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


def _config(**keys) -> StoreConfig:
    base = {"backend": "postgres", "dsn": "host=db", "blobs": "s3", "s3_bucket": "mail-bodies"}
    return dataclasses.replace(StoreConfig(), **{**base, **keys})


def test_bodies_in_postgres_need_no_object_store():
    assert settings_from(StoreConfig()) is None


def test_the_secret_comes_from_its_file_and_never_shows_in_repr(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\nignored\n")
    settings = settings_from(
        _config(
            s3_endpoint="https://minio.example.net:9000",
            s3_region="eu-west-1",
            s3_prefix="mail/",
            s3_access_key="AKIDEXAMPLE",
            s3_secret_key_file=str(secret),
        )
    )
    assert settings.secret_key == SECRET and settings.access_key == "AKIDEXAMPLE"
    assert (settings.bucket, settings.endpoint, settings.prefix) == (
        "mail-bodies",
        "https://minio.example.net:9000",
        "mail/",
    )
    assert SECRET not in repr(settings)


def test_without_keys_the_credentials_are_left_to_the_aws_environment(monkeypatch):
    settings = settings_from(_config())
    assert settings.access_key == "" and settings.secret_key == ""
    pytest.importorskip("boto3")
    from txmailhost.store.s3blobs import S3Blobs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    blobs = S3Blobs(settings)
    # what a request is signed with (a presigned URL names the access key it was signed by)
    url = blobs._client.generate_presigned_url(
        "get_object", Params={"Bucket": blobs.bucket, "Key": blobs.new_key()}
    )
    assert "AKIDFROMENV" in url and SECRET not in url
    assert SECRET not in repr(blobs)


def test_an_unreadable_secret_file_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(StoreError, match="store.s3_secret_key_file"):
        settings_from(_config(s3_secret_key_file=str(tmp_path / "missing")))
