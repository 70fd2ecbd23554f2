"""The one place that reads the process environment.

Every variable is documented in `.env.example`. Values are parsed here into plain
Python values; `settings.py` turns them into Django settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def load_dotenv(path: Path) -> None:
    """Load KEY=VALUE lines from `path` into the environment, never overriding it."""
    if not path.is_file():
        return
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ImproperlyConfigured(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        key, value = line.split("=", 1)
        value = value.strip()
        # One pair of enclosing quotes goes; quotes inside stay (CONTENT_SECURITY_POLICY
        # ends in 'none', whose closing quote is part of the value).
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key.strip(), value)


def text(name: str, default: str = "") -> str:
    """A string variable, or `default` when unset or empty."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def flag(name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def number(name: str, default: float) -> float:
    """A numeric variable."""
    value = os.environ.get(name, "").strip()
    if value == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def items(name: str, default: list[str]) -> list[str]:
    """A comma-separated list variable."""
    value = os.environ.get(name, "").strip()
    if value == "":
        return list(default)
    return [part.strip() for part in value.split(",") if part.strip()]
