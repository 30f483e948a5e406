"""Packaging metadata (issue 16, item 7).

The minimums themselves are tested by ``.ci/min-versions``, which installs
exactly the ``>=`` versions declared here and runs this suite against them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_mit_licence_file_is_declared_and_present():
    meta = project()
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "pil_kmc developers" in text


def test_typed_and_classified():
    assert (ROOT / "pil_kmc" / "py.typed").is_file()
    classifiers = project()["classifiers"]
    assert "Typing :: Typed" in classifiers
    # The licence expression says it; PEP 639 forbids a licence classifier beside it.
    assert "License :: OSI Approved :: MIT License" not in classifiers


def test_project_urls_are_real_urls():
    for name, url in project().get("urls", {}).items():
        assert re.match(r"https://[^/\s]+\.[a-z]+/", url), (name, url)


def test_dependencies_have_plain_minimums_for_the_ci_stage_to_pin():
    deps = project()["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d)[0].lower() for d in deps}
    assert names == {"pillow", "numpy", "scipy"}
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9][0-9.]*", d) for d in deps), deps
    assert (ROOT / ".ci" / "min-versions").is_file() or not (ROOT / ".git").exists()


def test_sdist_carries_what_the_tests_need():
    manifest = (ROOT / "MANIFEST.in").read_text().split("\n")
    for line in ("include LICENSE README.md", "graft tests", "graft fixtures", "graft spec"):
        assert line in manifest
    assert "graft examples" in manifest  # the README's blocks and test_context use the photo
