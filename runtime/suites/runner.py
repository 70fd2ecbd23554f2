"""Run parsed suites against the agent, check by check, reporting each result as it finishes.

A `Target` runs one step and returns its Outcome: `InProcessTarget` calls the
pipeline directly (the default). Each suite gets a conversation of its own,
so suites never see each other's memory or machines. Results go to an
`on_result` callback as they finish (the command prints them, publishes them
to `/ws/test` and stores them as a test run).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from xml.etree import ElementTree as ET

from asgiref.sync import async_to_sync

from runtime.agent.nodes.ui import current_controls
from runtime.conversations import actions, selectors
from runtime.conversations.answering import approval_submit
from runtime.conversations.eventlog import chat_events_after, chat_last_seq
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import turn_run
from runtime.errors import AgentError
from runtime.llm.recorded import Recording
from runtime.suites.checks import WRONG_FIGURE, Outcome, ReferenceDatabase, evaluate
from runtime.suites.decisions import decisions_follow, decisions_none_waiting
from runtime.suites.parser import Check, Step, Suite
from runtime.wire import Event, StepResultEvent, SuiteEndEvent, SuiteStartEvent

ResultSink = Callable[[dict[str, Any]], None]


class Target(Protocol):
    """Somewhere steps run: one conversation per suite."""

    def open(self, *, chat: str, graph: str) -> None:
        """Start a fresh conversation on `graph`."""
        ...

    def run(self, step: Step) -> Outcome:
        """Run one step's action; AgentError for a step that cannot run."""
        ...


class InProcessTarget:
    """Runs steps through the pipeline in this process, as `user`."""

    def __init__(self, *, user, recordings: dict[str, dict[str, Any]] | None = None) -> None:
        self.user = user
        self.conversation_id = 0
        self.recordings = recordings or {}
        """Frozen steps by title (runtime.suites.frozen): answered from their recording."""
        self.replayed = 0
        """How many steps were answered from a recording."""

    def open(self, *, chat: str, graph: str) -> None:
        """A new conversation for the suite."""
        conversation = conversation_resolve(owner=Owner(user=self.user), chat=chat)
        actions.conversation_clear(conversation_id=conversation.id)
        actions.conversation_switch_graph(conversation_id=conversation.id, graph_name=graph)
        self.conversation_id = conversation.id

    def run(self, step: Step) -> Outcome:
        """Send, click, clear or switch graph; a message that waits for approval is decided
        as the step says (`> approve`, `> deny`)."""
        if step.action == "send":
            return self._send(step.argument, decisions=step.decisions,
                              recorded=self.recordings.get(step.title))
        if step.action == "clear":
            actions.conversation_clear(conversation_id=self.conversation_id)
            return self._after([])
        if step.action == "graph":
            actions.conversation_switch_graph(conversation_id=self.conversation_id,
                                              graph_name=step.argument)
            return self._after([])
        return self._click(step.argument, decisions=step.decisions)

    def _send(self, text: str, *, decisions: tuple[str, ...] = (),
              recorded: dict[str, Any] | None = None) -> Outcome:
        events: list[dict[str, Any]] = []

        async def collect(event: Event) -> None:
            events.append(event.as_dict())

        replay: dict[str, Any] = {}
        if recorded is not None:
            # On its graph, from the state it met, every model call from its recording.
            actions.conversation_switch_graph(conversation_id=self.conversation_id,
                                              graph_name=recorded["graph"])
            replay = {"recording": Recording.from_frames(recorded["frames"]),
                      "start": recorded["turn"]}
            self.replayed += 1
        result = async_to_sync(turn_run)(conversation_id=self.conversation_id, text=text,
                                             on_event=collect, **replay)
        # A paused message ends with its `approval` event (turn_run's last events).
        events = decisions_follow(decisions=decisions, events=events, decide=self._decide)
        answer = events[-1].get("answer", "") if result.waiting else result.answer
        return self._after(events, answer=answer, message_id=result.message_id)

    def _decide(self, waiting: dict[str, Any], decision: str) -> list[dict[str, Any]]:
        """Decide a paused message here and let it go on before returning (`inline`); its
        events from the decision on, read back from the conversation's event log."""
        after = chat_last_seq(conversation_id=self.conversation_id)
        async_to_sync(approval_submit)(conversation_id=self.conversation_id,
                                       approval_id=waiting["id"], decision=decision,
                                       inline=True)
        logged = chat_events_after(conversation_id=self.conversation_id, after_seq=after)
        events = [{k: v for k, v in event.items() if k != "seq"} for event in logged
                  if event.get("message_id") in (waiting["message_id"], None, "")]
        if not events or events[-1].get("type") not in ("done", "approval"):
            raise AgentError(f"message {waiting['message_id']} did not go on after "
                             f"`> {decision}`: its last event is "
                             f"{events[-1].get('type') if events else 'none'}")
        return events

    def _click(self, which: str, *, decisions: tuple[str, ...] = ()) -> Outcome:
        state = selectors.conversation_state(conversation_id=self.conversation_id)
        control = actions.control_find(current_controls(state.ui), which)
        clicked = actions.conversation_click(conversation_id=self.conversation_id,
                                             action=control["action"], machine=control["machine"])
        if clicked.message:
            return replace(self._send(clicked.message, decisions=decisions),
                           message=clicked.message)
        decisions_none_waiting(decisions)
        return self._after([])

    def _after(self, events: list[dict[str, Any]], answer: str = "", message_id: str = ""
               ) -> Outcome:
        state = selectors.conversation_state(conversation_id=self.conversation_id)
        trace = next((e for e in events if e.get("type") == "frame_trace"), None)
        return Outcome(answer=answer, events=tuple(events), trace=trace,
                       controls=tuple(current_controls(state.ui)), memory=dict(state.memory),
                       message_id=message_id)


@dataclass
class CheckTally:
    """How often one check passed over the repeats."""

    suite: str
    step: str
    check: str
    passed: int = 0
    runs: int = 0
    min_rate: float | None = None
    """The share of rounds it must pass, as the suite states it (None: not stated)."""

    def meets(self, default: float = 1.0) -> bool:
        """Whether it passed often enough: its own threshold, else `default`."""
        rate = self.min_rate if self.min_rate is not None else default
        return self.runs > 0 and self.passed / self.runs >= rate - 1e-9


@dataclass
class RunSummary:
    """The outcome of a whole run."""

    passed: int = 0
    failed: int = 0
    suites: list[dict[str, Any]] = field(default_factory=list)
    tallies: dict[tuple[str, int, int], CheckTally] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    wrong_figures: int = 0
    """Failed checks whose answer stated a made-up figure (`WRONG FIGURE:`), every round."""

    @property
    def total(self) -> int:
        """Checks run."""
        return self.passed + self.failed

    @property
    def rate(self) -> float:
        """Share of checks passed (1.0 for an empty run)."""
        return self.passed / self.total if self.total else 1.0


def run_suites(*, suites: list[Suite], target: Target, graph: str = "", repeat: int = 1,
               on_result: ResultSink, database: ReferenceDatabase | None = None
               ) -> RunSummary:
    """Run every suite `repeat` times; every check's result goes to `on_result` at once.

    `figure matches` reference queries run on `database`, by default the eras database
    this process is configured with (with a target on another server too: the same demo
    data, read here).
    """
    summary = RunSummary()
    run_key = uuid.uuid4().hex[:8]
    for round_ in range(1, repeat + 1):
        for suite in suites:
            suite_graph = graph or suite.graph or "v3-framed"
            on_result(SuiteStartEvent(suite=suite.name, round=round_, title=suite.title,
                                      graph=suite_graph, steps=len(suite.steps)).as_dict())
            passed = failed = 0
            try:
                target.open(chat=f"suite-{suite.name}-{run_key}-{round_}"[:80],
                            graph=suite_graph)
            except AgentError as exc:
                steps = ()
                failed += 1
                on_result(_result(suite, None, None, False, f"cannot start: {exc}", "", 0.0,
                                  round_))
            else:
                steps = suite.steps
            for step_index, step in enumerate(steps):
                ok_, failed_ = _run_step(suite, step, step_index, target=target,
                                         summary=summary, round_=round_, on_result=on_result,
                                         counted=passed + failed, database=database)
                passed, failed = passed + ok_, failed + failed_
            summary.passed += passed
            summary.failed += failed
            end = SuiteEndEvent(suite=suite.name, round=round_, passed=passed, failed=failed,
                                total=passed + failed,
                                score=f"{passed}/{passed + failed}").as_dict()
            summary.suites.append(end)
            on_result(end)
    return summary


def _run_step(suite: Suite, step: Step, step_index: int, *, target: Target,
              summary: RunSummary, round_: int, on_result: ResultSink, counted: int,
              database: ReferenceDatabase | None = None) -> tuple[int, int]:
    """Run one step and report each of its checks (`counted`: the suite's results so far);
    (passed, failed). A step that fails with no check of its own is one failed result,
    so its failure is never silent."""
    started = time.perf_counter()
    try:
        outcome = target.run(step)
        error = ""
    except AgentError as exc:
        outcome, error = Outcome(), str(exc)
    if step.action == "send":
        outcome = replace(outcome, message=step.argument)
    ms = (time.perf_counter() - started) * 1000
    checks: tuple[Check | None, ...] = step.checks or ((None,) if error else ())
    passed = failed = 0
    for check_index, check in enumerate(checks):
        if error:
            ok, detail = False, f"the step failed: {error}"
        else:
            assert check is not None
            ok, detail = evaluate(check, outcome, database=database)
        passed, failed = passed + ok, failed + (not ok)
        summary.wrong_figures += not ok and detail.startswith(WRONG_FIGURE)
        text = check.text if check else "(step)"
        tally = summary.tallies.setdefault(
            (suite.name, step_index, check_index),
            CheckTally(suite=suite.name, step=step.title, check=text,
                       min_rate=check.min_rate if check else None))
        tally.passed += ok
        tally.runs += 1
        # index: as the stored check's position
        result = _result(suite, step, text, ok, detail, outcome.message_id, ms, round_,
                         index=counted + passed + failed)
        summary.results.append(result)
        on_result(result)
    return passed, failed


def _result(suite: Suite, step: Step | None, check: str | None, ok: bool, detail: str,
            message_id: str, ms: float, round_: int, index: int | None = None
            ) -> dict[str, Any]:
    return StepResultEvent(
        suite=suite.name, round=round_, step=step.title if step else "(suite)",
        action=_action_text(step) if step else "",
        check=check or "(start)", passed=ok, detail=detail, message_id=message_id,
        ms=round(ms, 1), index=index).as_dict()


def _action_text(step: Step) -> str:
    """The step's action as written, e.g. `send: how many? › approve`."""
    return " › ".join([f"{step.action}: {step.argument}".rstrip(": "), *step.decisions])


def junit_xml(summary: RunSummary) -> str:
    """The run as JUnit XML: a testsuite per suite round, a testcase per check."""
    root = ET.Element("testsuites", tests=str(summary.total), failures=str(summary.failed))
    by_suite: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for result in summary.results:
        by_suite.setdefault((result["suite"], result["round"]), []).append(result)
    for (name, round_), results in by_suite.items():
        element = ET.SubElement(
            root, "testsuite", name=name if round_ == 1 else f"{name} (round {round_})",
            tests=str(len(results)), failures=str(sum(not r["passed"] for r in results)))
        for result in results:
            case = ET.SubElement(element, "testcase", classname=name,
                                 name=f"{result['step']} › {result['check']}",
                                 time=f"{result['ms'] / 1000:.3f}")
            if not result["passed"]:
                failure = ET.SubElement(case, "failure", message=result["detail"][:500])
                failure.text = result["detail"]
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
