"""The examples of docs/operations.md (and other pages), read by the tests that run them, so the
pages show what is tested."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "operations.md"


def example(name: str, doc: Path = DOC) -> str:
    """The fenced block right after `<!-- example: NAME -->` in `doc`."""
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", doc.read_text(encoding="utf-8"), re.S
    )
    if found is None:
        raise LookupError(f"no example {name!r} in {doc}")
    return found.group(1) + "\n"
