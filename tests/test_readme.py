"""Every Python block of README.md runs verbatim (issue 16, item 9).

Each block runs in its own process, in a fresh directory that holds a copy
of the repository's ``examples/`` (the files the README may use), with this
checkout's pil_kmc on the path. A block may use only what the repository
ships or what it creates itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in the README."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize(
    "line, code", [pytest.param(line, code, id=f"line-{line}") for line, code in python_blocks()]
)
def test_readme_block_runs(line, code, tmp_path):
    if "dask" in code and importlib.util.find_spec("dask") is None:
        pytest.skip("this block needs the dask extra: pip install 'pil-kmc[dask]'")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"README.md block at line {line} failed:\n{result.stderr}"
