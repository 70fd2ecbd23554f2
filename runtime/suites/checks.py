"""Evaluate one check against one step's outcome: (passed, detail).

The truth checks (`figure matches`, `no figure`, `abstains`) read the answer's figures
with the agent's own figure reader (runtime.agent.figures), so "after formatting" means
here what it means to the grounding check: 1,234.57 ≙ 1234.5678, 12.5 million ≙
12,456,789, 42 % ≙ 0.42. A figure the user's own message states ("in 2031") may always
be said back. A failed truth check whose answer states a figure it had no ground for
(neither in the user's message nor, for `figure matches`, a cell of the reference row)
is a WRONG FIGURE: its detail starts with `WRONG FIGURE:` and the runner counts it
apart, as a made-up number is worse than a missing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.agent.figures import Figure, as_number, figure_found, figures_in
from runtime.agent.speech import echoes
from runtime.domain.database import ErasDatabase
from runtime.errors import AgentError
from runtime.suites.parser import Check

HUD_FALLBACK = 40
WRONG_FIGURE = "WRONG FIGURE:"
"""How the detail of a check failed on a made-up figure starts."""
ABSTENTIONS = (
    # the runtime's own
    "haven't checked", "have not checked", "could not find", "couldn't find",
    "could not get", "couldn't get", "could not work out", "couldn't work out",
    "has nothing", "nothing matching", "no table", "not in the database",
    "don't have", "do not have", "doesn't have", "does not have", "cannot answer",
    # and a model's usual ways of saying the same
    "can't find", "cannot find", "did not find", "didn't find", "found no", "found nothing",
    "can't answer", "could not answer", "couldn't answer", "unable to answer",
    "can't check", "cannot check", "could not check", "couldn't check", "unable to check",
    "database has no", "no data", "no record", "no information", "don't know", "do not know",
)
"""Phrases that say the answer could not be found or checked (case-insensitive; ’ ≙ ')."""
_ABSTAINS = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in ABSTENTIONS) + r")")
_NONE = re.compile(r"\b(?:no|none|nothing|zero|not any)\b", re.I)
"""Words that say "there is none" (an empty or NULL reference expects one, or a 0)."""


class ReferenceDatabase(Protocol):
    """Where `figure matches` runs its reference query (an ErasDatabase)."""

    def query(self, sql: str) -> Any:
        """The query's result: `.columns` and `.rows`; AgentError when it fails."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What a step produced, as the checks read it."""

    answer: str = ""
    """The answer text (empty for clicks, clears and graph switches)."""
    events: tuple[dict[str, Any], ...] = ()
    """The wire events of the step, in order."""
    trace: dict[str, Any] | None = None
    """The message's frame_trace, if it had one."""
    controls: tuple[dict[str, Any], ...] = ()
    """The controls after the step."""
    memory: dict[str, Any] = field(default_factory=dict)
    """The memory state after the step."""
    message_id: str = ""
    """The message the step sent, if any."""
    message: str = ""
    """What the user said: the `> send:` text, or the text a clicked button sent."""

    def hud(self) -> list[dict[str, Any]]:
        """The step's HUD events."""
        return [e for e in self.events if e.get("type") == "hud"]


def _nodes(outcome: Outcome) -> set[str]:
    if outcome.trace:
        return {f["node"] for f in outcome.trace.get("frames", [])}
    return {e["node"] for e in outcome.hud()[-HUD_FALLBACK:]}


def _frames(outcome: Outcome) -> int:
    if outcome.trace:
        return int(outcome.trace.get("total_frames", 0))
    return max((e["frame"] for e in outcome.hud()[-HUD_FALLBACK:]), default=0)


def _routed(outcome: Outcome) -> str:
    for record in (outcome.trace or {}).get("frames", []):
        if record.get("node_type") == "pa":
            return str(record.get("output", {}).get("expert", ""))
    for event in outcome.hud()[-HUD_FALLBACK:]:
        if event.get("event") == "routed" and "expert" in event.get("data", {}):
            return str(event["data"]["expert"])
    return ""


def _sql(outcome: Outcome) -> list[str]:
    found = []
    for record in (outcome.trace or {}).get("frames", []):
        output = record.get("output", {})
        if output.get("sql"):
            found.append(str(output["sql"]))
        for call in output.get("tool_calls", []) or []:
            if isinstance(call, dict) and call.get("tool") == "query":
                found.append(str(call.get("args", {}).get("sql", "")))
    return found


def evaluate(check: Check, outcome: Outcome, *, database: ReferenceDatabase | None = None
             ) -> tuple[bool, str]:
    """Whether `check` holds for `outcome`, with a detail line that says why.

    `database` runs a `figure matches` reference query (default: the configured eras
    database, `ErasDatabase.from_settings()`, opened only when such a check runs); the
    query runs once per evaluation.
    """
    kind, values = check.kind, check.values
    answer = outcome.answer
    if kind in TRUTH_CHECKS:
        return evaluate_truth(check, outcome, database=database)
    if kind == "response contains":
        ok = any(v.lower() in answer.lower() for v in values)
        return ok, f"answer: {answer!r}"
    if kind == "response not contains":
        hits = [v for v in values if v.lower() in answer.lower()]
        return not hits, f"answer: {answer!r}" + (f" (contains {hits[0]!r})" if hits else "")
    if kind == "response matches":
        ok = any(re.search(v, answer) for v in values)
        return ok, f"answer: {answer!r}"
    if kind == "trace ran":
        nodes = _nodes(outcome)
        return any(v in nodes for v in values), f"nodes: {', '.join(sorted(nodes)) or 'none'}"
    if kind == "trace path":
        path = (outcome.trace or {}).get("path", "")
        return path in values, f"path: {path or 'none'}"
    if kind == "trace frames":
        frames = _frames(outcome)
        return str(frames) in values, f"frames: {frames}"
    if kind == "trace event":
        seen = {e["event"] for e in outcome.hud()} | {f"{e['node']}.{e['event']}"
                                                      for e in outcome.hud()}
        return any(v in seen for v in values), f"events: {', '.join(sorted(seen)) or 'none'}"
    if kind == "trace routed":
        expert = _routed(outcome)
        return expert in values, f"routed to: {expert or 'no expert'}"
    if kind == "controls match":
        texts = [f"{c.get('action', '')} {c.get('label', '')}" for c in outcome.controls]
        missing = [p for p in values
                   if not any(re.search(p.replace(" or ", "|"), t, re.I) for t in texts)]
        detail = f"controls: {', '.join(c.get('action', '') for c in outcome.controls) or 'none'}"
        return not missing, detail + (f" (no match for {missing[0]!r})" if missing else "")
    if kind == "memory":
        value = outcome.memory.get(check.field)
        if isinstance(value, list):
            ok = any(v.lower() in (str(item).lower() for item in value) for v in values)
        else:
            ok = str(value or "").lower() in (v.lower() for v in values)
        return ok, f"memory {check.field}: {value!r}"
    if kind == "progress":
        kinds = [e.get("kind", "") for e in outcome.events if e.get("type") == "progress"]
        return kinds == list(values), f"progress: {', '.join(kinds) or 'none'}"
    if kind in ("result rows", "result columns", "chart"):
        return _result_check(kind, values, outcome)
    if kind == "sql matches":
        queries = _sql(outcome)
        ok = any(re.search(v, q, re.I) for v in values for q in queries)
        return ok, f"sql: {' | '.join(queries) or 'no query'}"
    raise ValueError(f"unknown check kind {kind!r}")


def _result_check(kind: str, values: tuple[str, ...], outcome: Outcome) -> tuple[bool, str]:
    """`result rows`, `result columns`, `chart`: on the last `result` event of the step (the
    query the answer was read from)."""
    shown = [e for e in outcome.events if e.get("type") == "result"]
    if not shown:
        return False, "no result: the answer was read from no query"
    last = shown[-1]
    if kind == "result rows":
        return str(last.get("row_count")) in values, f"result rows: {last.get('row_count')}"
    if kind == "result columns":
        names = [str(c.get("name", "")) for c in last.get("columns", [])]
        ok = [n.lower() for n in names] == [v.lower() for v in values]
        return ok, f"result columns: {', '.join(names) or 'none'}"
    chart = last.get("chart", {}).get("kind", "")
    return chart in values, f"chart: {chart or 'none given'}"


# --- truth checks --------------------------------------------------------------------------

TRUTH_CHECKS = ("figure matches", "no figure", "abstains", "response is not an echo")
"""The checks on what an answer says is true, whatever its wording."""


def evaluate_truth(check: Check, outcome: Outcome, *, database: ReferenceDatabase | None = None
                   ) -> tuple[bool, str]:
    """A truth check (TRUTH_CHECKS) as `evaluate` answers it."""
    if check.kind == "figure matches":
        return figure_matches(check.values[0], outcome, database=database)
    if check.kind in ("no figure", "abstains"):
        return no_figure(outcome, abstain=check.kind == "abstains")
    echo = echoes(outcome.message, outcome.answer)
    return not echo, f"answer: {outcome.answer!r}" + (" (it restates the message)" if echo
                                                      else "")


def _show(cell: Any) -> str:
    """A reference cell as the detail shows it (a float without its noise)."""
    if isinstance(cell, float):
        return f"{cell:.6g}" if abs(cell) < 1e15 else repr(cell)
    return str(cell)


def unfounded(figures: list[Figure], message: str, cells: tuple[Any, ...] = ()
              ) -> list[Figure]:
    """The figures the answer had no ground for: neither stated in the user's `message`
    (the same value, as written or after formatting) nor standing for one of `cells`."""
    said = figures_in(message)
    return [f for f in figures
            if not any(f.value == m.value or f.stands_for(m.value) for m in said)
            and not any(f.stands_for(cell) for cell in cells)]


def text_stated(text: str, answer: str) -> bool:
    """Whether `answer` states a text cell as a whole word or words, case-insensitive; an
    underscore reads as a space (`on_hold` ≙ "on hold")."""
    words = [re.escape(w) for w in re.split(r"[\s_]+", text.strip()) if w]
    if not words:
        return True
    pattern = r"(?<!\w)" + r"[\s_]+".join(words) + r"(?!\w)"
    return re.search(pattern, answer, re.I) is not None


def figure_matches(sql: str, outcome: Outcome, *, database: ReferenceDatabase | None = None
                   ) -> tuple[bool, str]:
    """`figure matches: SELECT …`: every cell of the reference's first row is stated.

    A row that names something (a text cell: "which customer …") is answered by naming it:
    its numbers must then be stated right or not at all. A number is stated when a figure of the answer stands for it after formatting; a text
    (a name, a city, a status) when the answer holds it as a whole word. A first row of
    NULLs, or no row at all, expects "none": the answer then states no figure but 0 (and
    those of the user's message) and says so (a 0, or no / none / nothing / zero / not
    any). A reference query that fails is a failed check (the suite is wrong), never a
    pass.
    """
    answer = outcome.answer
    try:
        result = (database or ErasDatabase.from_settings()).query(sql)
    except AgentError as exc:
        # The suite's query is wrong, or this runner's eras database is not the agent's.
        return False, (f"the reference query failed (check the suite's query and this "
                       f"runner's ERAS_DATABASE_URL): {exc} | {sql}")
    row = tuple(result.rows[0]) if result.rows else ()
    cells = tuple(cell for cell in row if cell is not None)
    figures = figures_in(answer)
    if not cells:
        stray = [f for f in unfounded(figures, outcome.message) if f.value != 0]
        if stray:
            return False, (f"{WRONG_FIGURE} expected none, the answer states "
                           f"{', '.join(f.text for f in stray)}: {answer!r}")
        if any(f.value == 0 for f in figures) or _NONE.search(answer):
            return True, f"expected none; answer: {answer!r}"
        return False, f"expected none (no, nothing, 0), the answer does not say so: {answer!r}"
    expected = ", ".join(_show(cell) for cell in cells)
    missing = [cell for cell in cells
               if not (figure_found(figures, cell) if as_number(cell) is not None
                       else text_stated(str(cell), answer))]
    if not missing:
        return True, f"expected {expected}; answer: {answer!r}"
    stray = unfounded(figures, outcome.message, cells)
    texts = [cell for cell in cells if as_number(cell) is None]
    if texts and not stray and all(as_number(cell) is not None for cell in missing):
        # "Which customer has the most projects?" asks for the name: an answer that names it
        # and states no figure is right; one that states a wrong count is not (below).
        return True, f"expected {expected}; the answer names it and states no figure: {answer!r}"
    if stray:
        return False, (f"{WRONG_FIGURE} expected {expected}, the answer states "
                       f"{', '.join(f.text for f in stray)}: {answer!r}")
    return False, (f"expected {expected}, the answer does not state "
                   f"{', '.join(_show(cell) for cell in missing)}: {answer!r}")


def no_figure(outcome: Outcome, *, abstain: bool) -> tuple[bool, str]:
    """`no figure`: the answer states no figure but those of the user's message (a 0 is a
    figure too). `abstains`: that, and it says it could not find, check or answer it
    (ABSTENTIONS)."""
    answer = outcome.answer
    stray = unfounded(figures_in(answer), outcome.message)
    if stray:
        return False, (f"{WRONG_FIGURE} the answer states {', '.join(f.text for f in stray)}"
                       f", which the question did not: {answer!r}")
    if abstain and not _ABSTAINS.search(answer.lower().replace("’", "'")):
        return False, f"the answer does not say it could not find or answer it: {answer!r}"
    return True, f"answer: {answer!r}"
