"""Parse a Markdown suite into steps and checks; errors name the file and line.

    # Suite title
    graph: v3-framed            (optional, before the first step)

    ## A step's title
    > send: how many customers are there?
    > approve                   (optional: decides a tool call the message waits for)
    - response contains: "120" or "one hundred twenty"
    - trace frames: 5
    - figure matches: SELECT COUNT(*) FROM customers
    - response is not an echo

Actions (`> `): send, click, clear, graph; after a send or a click, its decisions
(`> approve`, `> deny`: DECISIONS). Checks (`- `): see CHECK_KINDS; the VALUELESS ones are
written bare, and a `figure matches` query as it is, unquoted. Anything else is prose and
ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.domain.results import BAR, LINE, NONE
from runtime.engine.approval import DECISIONS as ENGINE_DECISIONS
from runtime.errors import AgentError

ACTIONS = ("send", "click", "clear", "graph")
CHARTS = (BAR, LINE, NONE)
"""The values a `chart` check takes (runtime.domain.results)."""
DECISIONS = ENGINE_DECISIONS
"""A step's decisions on the tool calls its message waits for, the ones a person may take
(`approve`, `deny`; runtime.suites.decisions): each follows a `send` or a `click`, before
the step's checks, and takes no value."""
CHECK_KINDS = {
    "response contains": "the answer contains one of the texts",
    "response not contains": "the answer contains none of the texts",
    "response matches": "the answer matches one of the regular expressions",
    "trace ran": "one of the nodes ran (frame_trace first, else the last 40 HUD events)",
    "trace path": "the path equals one of the values",
    "trace frames": "the frame count equals one of the numbers",
    "trace event": "one of the HUD events was emitted (`event` or `node.event`)",
    "trace routed": "the PA routed to one of the experts",
    "controls match": "every comma-separated pattern matches some control's action or label "
                      "(a pattern may be `a or b`)",
    "memory": "`memory FIELD: value`: the field equals, or for lists contains, the value",
    "progress": "the progress events' kinds, in order, are exactly these (comma-separated)",
    "sql matches": "a database query run for the message matches one of the expressions",
    "result rows": "the query the answer was read from (its last `result` event) gave one of "
                   "these numbers of rows",
    "result columns": "that result's columns are exactly these, in order (comma-separated, "
                      "any case)",
    "chart": "that result's chart is one of these: bar, line, none",
    "figure matches": "the answer states every cell of the first row of a reference SELECT, "
                      "run on the eras database (a figure after formatting, a text as a word)",
    "no figure": "the answer states no figure but those of the user's message",
    "abstains": "no figure, and the answer says it could not find or answer it",
    "response is not an echo": "the answer does not merely restate the user's message",
}
VALUELESS = ("no figure", "abstains", "response is not an echo")
"""Checks written bare, `- no figure`: they take no value (a colon is allowed)."""
RAW_VALUE = ("figure matches",)
"""Checks whose value is read as written (a SELECT may hold quotes), never as alternatives."""
_ACTION = re.compile(r"^>\s*(?P<verb>[a-z]+)\s*(?::\s*(?P<arg>.*))?$")
_CHECK = re.compile(r"^-\s*(?P<subject>[a-z][a-z _.]*?)\s*:\s*(?P<value>.*)$")
_BARE_CHECK = re.compile(r"^-\s*(?P<subject>[a-z][a-z _.]*?)\s*:?\s*$")
_REFERENCE = re.compile(r"^\s*\(?\s*(?:SELECT|WITH)\b", re.I)
_QUOTED = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*(?:or\s+|$)')


class SuiteError(AgentError):
    """A suite file that cannot be parsed; the message names the file and line."""

    code = "suite_error"


@dataclass(frozen=True)
class Check:
    """One expectation about a step's outcome."""

    kind: str
    """One of CHECK_KINDS (for memory, `memory`)."""
    values: tuple[str, ...]
    """The alternatives (any may match), or the ordered items for progress."""
    text: str
    """The line as written."""
    line: int
    """Its line number."""
    field: str = ""
    """For memory checks: the field."""
    min_rate: float | None = None
    """The share of `--repeat` rounds it must pass (`(min pass rate 2/3)` after the value);
    None: every round (or the run's `--min-pass-rate`)."""


@dataclass(frozen=True)
class Step:
    """An action and the checks on its outcome."""

    title: str
    """The step's heading."""
    action: str
    """send, click, clear or graph."""
    argument: str
    """The message, the control, or the graph name."""
    checks: tuple[Check, ...]
    """What must hold afterwards."""
    line: int
    """The action's line number."""
    decisions: tuple[str, ...] = ()
    """`approve` or `deny` (DECISIONS) for each time the message pauses before a tool call
    that waits for approval, in order; the checks read the answer after the last."""


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    """The file's stem, e.g. `smoketest`."""
    title: str
    """The `#` heading."""
    path: str
    """The file it came from."""
    graph: str
    """The graph to run on (may be empty: the caller's choice)."""
    steps: tuple[Step, ...] = field(default_factory=tuple)
    """The steps, in order."""


def split_alternatives(value: str) -> tuple[str, ...]:
    """`"a" or "b"` -> (a, b); an unquoted value is one alternative as written."""
    value = value.strip()
    if not value.startswith('"'):
        return (value,)
    found, rest = [], value
    while rest:
        match = _QUOTED.match(rest)
        if not match:
            raise ValueError(f"cannot read the alternatives in {value!r}: write "
                             '"one" or "other", each in double quotes')
        found.append(match.group(1).replace('\\"', '"'))
        rest = rest[match.end():]
    return tuple(found)


def parse_suite(text: str, *, path: str = "<suite>") -> Suite:
    """Parse a suite; SuiteError says `path:line: what is wrong`."""
    title, graph = "", ""
    steps: list[Step] = []
    current: dict | None = None

    def fail(lineno: int, message: str) -> SuiteError:
        return SuiteError(f"{path}:{lineno}: {message}")

    def close(lineno: int) -> None:
        if current is None:
            return
        if not current["action"]:
            raise fail(current["line"], f"step {current['title']!r} has no action "
                       f"(`> send: …`, `> click: …`, `> clear`, `> graph: …`)")
        steps.append(Step(title=current["title"], action=current["action"],
                          argument=current["argument"], checks=tuple(current["checks"]),
                          line=current["action_line"],
                          decisions=tuple(current["decisions"])))

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("## "):
            close(lineno)
            current = {"title": line[3:].strip(), "line": lineno, "action": "", "argument": "",
                       "action_line": lineno, "checks": [], "decisions": []}
        elif line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("graph:") and current is None:
            graph = line.split(":", 1)[1].strip()
        elif line.startswith(">"):
            if current is None:
                raise fail(lineno, "an action before the first `## step` heading")
            _parse_action(line, lineno, current, fail)
        elif line.startswith("- "):
            if current is None or not current["action"]:
                raise fail(lineno, "a check must follow a step's action")
            current["checks"].append(_parse_check(line, lineno, fail))
    close(len(text.splitlines()))
    if not steps:
        raise SuiteError(f"{path}: no steps (a step starts with `## title`)")
    return Suite(name=Path(path).stem, title=title or Path(path).stem, path=path, graph=graph,
                 steps=tuple(steps))


def _parse_action(line: str, lineno: int, current: dict, fail) -> None:
    """Read one `> …` line into the step being parsed: its action, or a decision."""
    match = _ACTION.match(line)
    if not match or match["verb"] not in ACTIONS + DECISIONS:
        raise fail(lineno, f"unknown action {line!r}; actions are: "
                   f"{', '.join(ACTIONS + DECISIONS)}")
    verb, argument = match["verb"], (match["arg"] or "").strip()
    if verb in DECISIONS:
        _parse_decision(verb, argument, lineno, current, fail)
        return
    if current["action"]:
        raise fail(lineno, "a step has one action; start a new `## step` for another")
    if verb != "clear" and not argument:
        raise fail(lineno, f"`> {verb}` needs a value after the colon")
    current.update(action=verb, argument=argument, action_line=lineno)


def _parse_decision(verb: str, argument: str, lineno: int, current: dict, fail) -> None:
    """`> approve` / `> deny`: right after the step's send or click, before its checks."""
    if argument:
        raise fail(lineno, f"`> {verb}` takes no value (it decides the tool call the "
                   f"message waits for)")
    if current["action"] not in ("send", "click"):
        raise fail(lineno, f"`> {verb}` decides a tool call the step's message waits for: "
                   f"put it right after the step's `> send: …` or `> click: …`")
    if current["checks"]:
        raise fail(lineno, f"`> {verb}` comes before the step's checks (they check the "
                   f"answer after the decision)")
    current["decisions"].append(verb)


_MIN_RATE = re.compile(r"\s*\(min pass rate\s+(?:(?P<n>\d+)\s*/\s*(?P<d>\d+)|"
                       r"(?P<pct>\d+(?:\.\d+)?)\s*%)\)\s*$")


def parse_rate(text: str) -> float:
    """`2/3` or `67%` as a share; ValueError when it is neither or not within 0..1."""
    text = text.strip()
    if "/" in text:
        n, d = (int(part) for part in text.split("/", 1))
        rate = n / d if d else -1.0
    else:
        rate = float(text.rstrip("%")) / 100
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a pass rate is between 0% and 100%, not {text!r}")
    return rate


def _parse_check(line: str, lineno: int, fail) -> Check:
    min_rate = None
    threshold = _MIN_RATE.search(line)
    if threshold:
        text = threshold["pct"] + "%" if threshold["pct"] else f"{threshold['n']}/{threshold['d']}"
        try:
            min_rate = parse_rate(text)
        except ValueError as exc:
            raise fail(lineno, str(exc)) from None
        line = line[:threshold.start()]
    bare = _BARE_CHECK.match(line)
    if bare and bare["subject"].strip() in VALUELESS:
        return Check(kind=bare["subject"].strip(), values=(), text=line[2:].strip().rstrip(":"),
                     line=lineno, min_rate=min_rate)
    match = _CHECK.match(line)
    if not match:
        raise fail(lineno, f"cannot read the check {line!r}; write `- kind: value` (or one "
                   f"that takes none: {', '.join(VALUELESS)})")
    subject, value = match["subject"].strip(), match["value"].strip()
    if subject in VALUELESS:
        raise fail(lineno, f"`{subject}` takes no value: write `- {subject}`")
    if not value:
        raise fail(lineno, f"the check {subject!r} needs a value")
    field_name = ""
    if subject.startswith("memory "):
        subject, field_name = "memory", subject.split(" ", 1)[1].strip()
    if subject not in CHECK_KINDS:
        raise fail(lineno, f"unknown check {subject!r}; checks are: "
                   f"{', '.join(sorted(CHECK_KINDS))}")
    if subject in RAW_VALUE:
        if not _REFERENCE.match(value):
            raise fail(lineno, f"`{subject}` takes a reference query, `SELECT …` as written "
                       f"(unquoted), not {value!r}")
        values = (value,)
    elif subject in ("progress", "controls match", "result columns"):
        values = tuple(v.strip() for v in value.split(",") if v.strip())
    else:
        try:
            values = split_alternatives(value)
        except ValueError as exc:
            raise fail(lineno, str(exc)) from None
    if subject == "result rows" and not all(v.isdigit() for v in values):
        raise fail(lineno, f"`result rows` takes a number of rows, not {value!r}")
    if subject == "chart" and not set(values) <= set(CHARTS):
        raise fail(lineno, f"`chart` is one of {', '.join(CHARTS)}, not {value!r}")
    if subject in ("response matches", "sql matches"):
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail(lineno, f"bad regular expression {pattern!r}: {exc}") from None
    if subject == "trace frames" and not all(v.isdigit() for v in values):
        raise fail(lineno, "`trace frames` takes whole numbers")
    return Check(kind=subject, values=values, text=line[2:].strip(), line=lineno,
                 field=field_name, min_rate=min_rate)


def suite_files(folder: Path) -> list[Path]:
    """The suites in a folder: its Markdown files but the README, by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.md") if p.stem.lower() != "readme")


def load_suite(path: Path) -> Suite:
    """Read and parse a suite file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from exc
    return parse_suite(text, path=str(path))
