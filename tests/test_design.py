"""What docs/design.md says of the code's shape, kept true: Luigi only where the design page says."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "amp_luigi"
# docs/design.md: "Luigi appears only in tasks.py, ranges.py, settings.py, progress.py and __init__.py".
LUIGI_MODULES = {"tasks.py", "ranges.py", "settings.py", "progress.py", "__init__.py"}


def imports_luigi(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(name == "luigi" or name.startswith("luigi.") for name in names):
            return True
    return False


def test_luigi_is_imported_only_by_the_modules_the_design_page_names() -> None:
    found = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if imports_luigi(path)}
    assert found == LUIGI_MODULES
