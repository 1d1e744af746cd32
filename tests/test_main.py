"""`python -m amp_luigi` (amp_luigi/__main__.py): a command is required, its arguments are checked,
and a setting the command cannot work without is named on stderr with exit 2, never a traceback."""

from __future__ import annotations

import pytest

from amp_luigi.__main__ import main
from tests.conftest import Configure


@pytest.mark.parametrize("argv", [[], ["upload"], ["status"], ["sandbox", "--days", "0"]])
def test_a_missing_or_wrong_command_or_argument_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m amp_luigi")


def test_the_sandbox_needs_at_least_one_day(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sandbox", "--days", "0"])
    assert "--days must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["athena"], ["status", "--start", "2024-03-01"]])
def test_a_missing_setting_is_named_with_exit_2_and_no_traceback(
    configure: Configure, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"amp-luigi {argv[0]}: ") and "AWS_BUCKET_NAME" in err
    assert "Traceback" not in err
