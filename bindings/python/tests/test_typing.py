"""The package and its hand-written stubs pass mypy --strict, and so do the examples."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_examples_pass_mypy_strict() -> None:
    examples = sorted(str(p) for p in (HERE / "examples").glob("*.py")) + [str(HERE / "bench.py")]
    assert examples
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *examples],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE / "examples",
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.timeout(600)
def test_the_package_passes_mypy_strict() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(HERE / "python" / "astranet")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.timeout(600)
def test_stubs_match_the_compiled_module() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "astranet._astranet",
            "--allowlist",
            str(HERE / "tests" / "stubtest-allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE / "examples",
    )
    assert res.returncode == 0, res.stdout + res.stderr
