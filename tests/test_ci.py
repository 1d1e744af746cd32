"""`.ci/pythons`, which .ci/run uses to test every supported Python: it finds interpreters only when
they run and are the version they are named for, and it refuses to prove "3.10+" with one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CURRENT = f"{sys.version_info.major}.{sys.version_info.minor}"


def pythons(versions: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".ci" / "pythons"), "--list"],
        env={**os.environ, "CI_PYTHON_VERSIONS": versions, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_fewer_than_two_versions_found_is_a_clear_failure() -> None:
    run = pythons(f"{CURRENT} 3.99")
    assert run.returncode == 1
    assert run.stdout == ""
    assert f"found CPython {CURRENT} only, of {CURRENT} 3.99" in run.stderr
    assert "Install the others" in run.stderr


def executable(path: Path, script: str) -> Path:
    """An executable named like an interpreter: `script` answers `.ci/pythons`' version question."""
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_each_interpreter_found_is_the_cpython_it_is_named_for(tmp_path: Path) -> None:
    """The interpreter running this test under its own version's name is found; of executables named
    python3.96 to python3.99, the one answering as the CPython it is named for is found too (two must
    be), while one claiming another version, one that is PyPy and one that fails to run are not.
    PYENV_ROOT points nowhere, so these are the only candidates (no 3.9x is in /usr/bin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = executable(bin_dir / f"python{CURRENT}", f'exec "{sys.executable}" "$@"')
    named_for = executable(bin_dir / "python3.99", "echo CPython 3.99")
    executable(bin_dir / "python3.98", "echo CPython 3.99")
    executable(bin_dir / "python3.97", "echo PyPy 3.97")
    executable(bin_dir / "python3.96", "exit 1")
    run = pythons(
        f"{CURRENT} 3.96 3.97 3.98 3.99",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYENV_ROOT=str(tmp_path / "no-pyenv"),
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{CURRENT} {real}", f"3.99 {named_for}"]
