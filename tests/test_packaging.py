"""The source distribution: everything needed to run the tests and read the docs, licensed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """(member names, PKG-INFO, build output) of an sdist built by the project's backend from
    a copy of the tree without build leftovers: setuptools reuses an old ``*.egg-info``'s file
    list, which would hide a missing MANIFEST.in rule."""
    tree = tmp_path_factory.mktemp("tree") / "txmailhost"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "*.egg-info",
            "build",
            "dist",
            "__pycache__",
            ".*_cache",
            "txmailhost-data",
            "results",
        ),
    )
    out = tmp_path_factory.mktemp("sdist")
    script = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip().splitlines()[-1]
    with tarfile.open(os.path.join(out, name)) as tar:
        prefix = name.removesuffix(".tar.gz") + "/"
        members = {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}
        pkg_info = tar.extractfile(prefix + "PKG-INFO").read().decode()
    return members, pkg_info, result.stdout + result.stderr


def test_sdist_holds_the_test_support_e2e_fixtures_docs_and_license(sdist):
    members, _, _ = sdist
    for path in (
        "LICENSE",
        "CHANGELOG.rst",
        "tests/support/server.py",
        "tests/e2e/conftest.py",
        "tests/fixtures/bad_configs/unknown_key.toml",
        "tests/fixtures/bad_configs/unknown_key.expected",
        "docs/admin.rst",
        "docs/embedding.rst",
        "docs/examples/embed.py",
        "bench/__main__.py",
        ".ci/run",
        "tools/imaptest/run.sh",
        "tools/imaptest/imaptest-924f619.tar.xz",
    ):
        assert path in members, path


def test_sdist_holds_every_file_under_version_control(sdist):
    if shutil.which("git") is None or not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    members, _, _ = sdist
    missing = [path for path in tracked if path != ".gitignore" and path not in members]
    assert missing == []


def test_sdist_declares_its_license_as_an_spdx_expression_without_a_deprecation_warning(sdist):
    _, pkg_info, output = sdist
    assert "License-Expression: MIT" in pkg_info
    assert "License-File: LICENSE" in pkg_info
    assert "deprecated" not in output.lower(), output
