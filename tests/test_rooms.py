"""The rooms of runtime/ and the one direction their imports point.

DESIGN.md §1: engine ← agent ← conversations ← surfaces (api, realtime), with
llm/ and domain/ beside them below the engine. Suites drive conversations and
the REST API serves them (/api/tests, /api/test/status), so suites/ sits
between; the management commands are on top. The shared vocabulary (errors, JSON input, wire types) is
below everything. A module may import its own room and rooms on lower levels,
never a room on its level or above it.
"""

from __future__ import annotations

import ast
import pathlib

RUNTIME = pathlib.Path(__file__).resolve().parent.parent / "runtime"

LEVELS: list[dict[str, str]] = [
    # module prefix -> room name, lowest level first
    {"runtime.errors": "base", "runtime.jsonin": "base", "runtime.wire": "base"},
    {"runtime.llm": "llm", "runtime.domain": "domain"},
    {"runtime.engine": "engine"},
    {"runtime.agent": "agent"},
    {"runtime.conversations": "conversations"},
    {"runtime.suites": "suites"},
    {"runtime.api": "api"},
    {"runtime.realtime": "realtime"},
    {"runtime.management": "commands", "runtime.admin": "django", "runtime.apps": "django",
     "runtime.checks": "django", "runtime.models": "django", "runtime.migrations": "django"},
]


def room_of(module: str) -> tuple[int, str] | None:
    """(level, room) of a runtime module, by its longest matching prefix; None outside."""
    best: tuple[int, str, str] | None = None
    for level, rooms in enumerate(LEVELS):
        for prefix, room in rooms.items():
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[2]):
                    best = (level, room, prefix)
    return None if best is None else (best[0], best[1])


def module_name(path: pathlib.Path) -> str:
    """The dotted module name of a file under runtime/."""
    parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in a module's source, relative ones resolved, at any
    depth (inside functions and `if TYPE_CHECKING:` too)."""
    parent = module.split(".") if package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from runtime import conversations` names a room by its attribute.
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names
                         if room_of(f"{base}.{alias.name}") != room_of(base))
    return found


def violations() -> list[str]:
    """Every import from a module into a room on its own level (another room) or above."""
    wrong = []
    for path in sorted(RUNTIME.rglob("*.py")):
        if path == RUNTIME / "__init__.py":
            continue
        here = room_of(module_name(path))
        assert here is not None, f"{path} is in no room: add it to LEVELS"
        for line, target in imports_of(path.read_text(), module_name(path),
                                       package=path.name == "__init__.py"):
            there = room_of(target)
            if there is None or there[1] == here[1]:
                continue
            if there[0] >= here[0]:
                wrong.append(f"{path.relative_to(RUNTIME.parent)}:{line} ({here[1]}) imports "
                             f"{target} ({there[1]})")
    return wrong


def test_imports_point_down_from_the_surfaces_to_the_engine():
    """No module imports a room above its own, or a room beside it on the same level."""
    assert violations() == []


def test_the_check_sees_a_wrong_import():
    """The walk catches the engine importing a conversation service, even inside a function,
    and a room importing one beside it on its level."""
    source = "def f():\n    from runtime.conversations import busy\n"
    targets = [target for _, target in imports_of(source, "runtime.engine.loop")]
    assert "runtime.conversations" in targets
    assert room_of("runtime.conversations")[0] > room_of("runtime.engine.loop")[0]
    assert room_of("runtime.llm.openai")[0] == room_of("runtime.domain.sqlguard")[0]
    relative = imports_of("from ..conversations import answering\n", "runtime.api.views")
    assert (1, "runtime.conversations") in relative
