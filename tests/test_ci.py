"""`.ci/pythons`, which .ci/run uses to test every supported Python: it finds interpreters only when
they run and are the version they are named for, and it refuses to prove "3.10+" with one."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

CURRENT = f"{sys.version_info.major}.{sys.version_info.minor}"


def pythons(versions: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".ci" / "pythons"), "--list"],
        env={**os.environ, "CI_PYTHON_VERSIONS": versions},
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


def test_each_interpreter_found_is_the_cpython_it_is_named_for() -> None:
    run = pythons("3.10 3.11 3.12 3.13")
    if run.returncode == 1:  # a machine with one of them: the failure above
        assert "only" in run.stderr
        return
    assert run.returncode == 0, run.stderr
    for line in run.stdout.splitlines():
        version, path = line.split(" ", 1)
        answer = subprocess.run(
            [
                path,
                "-c",
                "import platform, sys; print(platform.python_implementation(), *sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert answer.stdout.split() == ["CPython", *version.split(".")]
