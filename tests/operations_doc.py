"""The examples of docs/operations.md, read by the tests that run them, so the page shows what is tested."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def example(name: str) -> str:
    """The fenced block right after `<!-- example: NAME -->`."""
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S
    )
    if found is None:
        raise LookupError(f"no example {name!r} in {DOC}")
    return found.group(1) + "\n"
