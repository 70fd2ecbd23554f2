"""The code stays readable in one sitting: no function or method runs past 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "agentsite", "graphs", "traces")
MAX_LINES = 60
EXEMPT = {("runtime/domain/demo.py", "eras_rows")}
"""(file, function) pairs allowed to be longer: the demo data builder is a table, not logic."""


def _sources() -> list[Path]:
    """Every .py file of the project's packages, migrations left out (Django writes them)."""
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if "migrations" not in path.relative_to(ROOT).parts)


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method defined in a file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_is_longer_than_60_lines():
    """Every function and method outside migrations is at most 60 lines, decorators not counted
    (only the demo data builder `eras_rows` is exempt); a failure lists each offender."""
    too_long = []
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        for function in _functions(path):
            length = function.end_lineno - function.lineno + 1
            if length > MAX_LINES and (name, function.name) not in EXEMPT:
                too_long.append(f"{name}:{function.lineno} {function.name} ({length} lines)")
    assert not too_long, f"functions longer than {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_every_exemption_names_a_function_that_exists():
    """An exemption whose function was renamed or removed goes too, so it cannot hide another."""
    missing = [f"{file} {name}" for file, name in sorted(EXEMPT)
               if not (ROOT / file).exists()
               or name not in {function.name for function in _functions(ROOT / file)}]
    assert not missing, "stale exemptions:\n" + "\n".join(missing)
