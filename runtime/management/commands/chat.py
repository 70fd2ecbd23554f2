"""`manage.py chat ["message"]`: talk to the agent in process, from the terminal."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runtime.agent.machines import render_text
from runtime.agent.nodes.interpreter import format_value
from runtime.agent.nodes.ui import current_controls
from runtime.conversations import actions, selectors
from runtime.conversations.answering import approval_submit
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import turn_run
from runtime.engine.approval import APPROVE, DENY
from runtime.errors import AgentError, ControlNotFound, ConversationBusy, GraphError
from runtime.wire import ApprovalEvent, DeltaEvent, Event, ResultEvent

HELP_TEXT = """Type a message and press Enter. Commands:
  /click ACTION     click a control (machine button or offered button) by its action or label
  /controls         show the current controls
  /clear            forget history and memory (the situation stays)
  /graph NAME       switch graph
  /quit             leave (or Ctrl-D)"""
TABLE_ROWS = 10
"""Rows of a result printed under its answer."""
CELL_WIDTH = 40
"""A wider cell is cut to this many characters in the printed table."""


def result_table(event: ResultEvent, *, rows: int = TABLE_ROWS) -> str:
    """A result as an aligned text table (its first `rows` rows; numbers right-aligned and
    written as the answers write them), with a line saying how many rows there are."""
    def cell(value) -> str:
        text = "" if value is None else format_value(value)
        return text if len(text) <= CELL_WIDTH else text[:CELL_WIDTH - 1] + "…"

    names = [c["name"] for c in event.columns]
    numeric = [c["type"] == "number" for c in event.columns]
    body = [[cell(v) for v in row] for row in event.rows[:rows]]
    widths = [max([len(n), *(len(r[i]) for r in body)]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    lines = [line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in body]
    total = f"{event.row_count} row{'s' if event.row_count != 1 else ''}"
    if event.capped:
        total = f"more than {total}"
    if len(body) < event.row_count:
        total += f", the first {len(body)} shown"
    return "\n".join(lines) + f"\n({total}; chart: {event.chart['kind']})"


class Command(BaseCommand):
    help = ("Send a message to the agent and print the streamed answer, the controls and a "
            "one-line trace summary. Without a message, chat interactively.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("message", nargs="?", help="the message; omit to chat interactively")
        parser.add_argument("--user", default="cli",
                            help="the user whose conversation to use (created if missing)")
        parser.add_argument("--chat", default="main", help="which of the user's chats")
        parser.add_argument("--graph", help="switch the conversation to this graph first")

    def handle(self, *args, **options) -> None:
        user, _ = get_user_model().objects.get_or_create(username=options["user"])
        conversation = conversation_resolve(owner=Owner(user=user), chat=options["chat"])
        self.conversation_id = conversation.id
        if options["graph"]:
            self._switch(options["graph"])
        if options["message"] is not None:
            if not self._send(options["message"]):
                raise CommandError("the message could not be answered (see above)")
            return
        self._interactive()

    def _interactive(self) -> None:
        self.stdout.write(HELP_TEXT)
        while True:
            try:
                line = input("you> ")
            except EOFError:
                self.stdout.write("")
                return
            line = line.strip()
            if not line:
                continue
            if line in {"/quit", "/exit"}:
                return
            if line == "/clear":
                try:
                    actions.conversation_clear(conversation_id=self.conversation_id)
                except ConversationBusy as exc:
                    self.stderr.write(f"error: {exc}")
                    continue
                self.stdout.write("(cleared: history and memory forgotten, situation kept)")
            elif line == "/controls":
                self._print_controls(self._controls())
            elif line.startswith("/graph "):
                try:
                    self._switch(line.split(maxsplit=1)[1])
                except CommandError as exc:
                    self.stderr.write(f"error: {exc}")
            elif line.startswith("/click "):
                self._click(line.split(maxsplit=1)[1])
            elif line.startswith("/"):
                self.stderr.write(f"unknown command {line.split()[0]!r}\n{HELP_TEXT}")
            else:
                self._send(line)

    def _send(self, text: str) -> bool:
        self.stdout.write("agent> ", ending="")

        results: list[ResultEvent] = []

        async def on_event(event: Event) -> None:
            if isinstance(event, DeltaEvent):
                self.stdout.write(event.text, ending="")
                self.stdout.flush()
            elif isinstance(event, ResultEvent):
                results.append(event)

        try:
            # async_to_sync keeps the ORM on this thread (and its connection), unlike asyncio.run.
            result = async_to_sync(turn_run)(
                conversation_id=self.conversation_id, text=text, on_event=on_event
            )
        except (AgentError, ConversationBusy) as exc:
            self.stdout.write("")
            self.stderr.write(f"error: {exc}")
            return False
        if result.waiting is not None:
            return self._decide(result.waiting)
        streamed_all = result.answer and not result.failed
        if not streamed_all:
            # A failure's explanation (or an answer not streamed) is printed whole.
            self.stdout.write("\n" + result.answer, ending="")
        self.stdout.write("")
        for shown in results:
            # The query the answer was read from, under it (single values too: the SQL
            # and its figure are the evidence).
            if shown.rows and (len(shown.rows) > 1 or len(shown.columns) > 1):
                self.stdout.write("\n" + result_table(shown))
            self.stdout.write(self.style.HTTP_INFO(f"[sql: {shown.sql}]"))
        self._print_controls(result.controls)
        trace = result.trace
        status = "FAILED " if result.failed else ""
        self.stdout.write(self.style.HTTP_INFO(
            f"[{status}{trace.graph} path {trace.path} | {trace.total_frames} frames | "
            f"{trace.total_ms:.0f} ms]"))
        return not result.failed

    def _decide(self, waiting: ApprovalEvent) -> bool:
        """The message waits for approval of a tool call: ask (no answer, e.g. no terminal:
        deny), then print the answer it ends with."""
        self.stdout.write(f"\n(waiting for your approval: {waiting.step}\n because "
                          f"{waiting.reason})")
        try:
            said = input("approve? [y/N] ").strip().lower()
        except EOFError:
            said = ""
        decision = APPROVE if said in {"y", "yes"} else DENY
        async_to_sync(approval_submit)(conversation_id=self.conversation_id,
                                       approval_id=waiting.id, decision=decision, inline=True)
        stored = selectors.conversation_message_result(
            conversation_id=self.conversation_id, message_id=waiting.message_id) or {}
        self.stdout.write(f"agent> {stored.get('answer', '')}")
        self.stdout.write(self.style.HTTP_INFO(
            f"[{decision}: path {stored.get('path', '')} | {stored.get('frames', 0)} frames]"))
        return stored.get("status") == "done"

    def _switch(self, graph_name: str) -> None:
        try:
            actions.conversation_switch_graph(conversation_id=self.conversation_id,
                                           graph_name=graph_name)
        except GraphError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"(now on graph {graph_name}; memory and history kept)")

    def _controls(self) -> list[dict]:
        state = selectors.conversation_state(conversation_id=self.conversation_id)
        return current_controls(state.ui)

    def _print_controls(self, controls: list[dict]) -> None:
        if controls:
            self.stdout.write("controls: " + "  ".join(
                f"[{c['label']}] ({(c['machine'] + ':') if c['machine'] else ''}{c['action']})"
                for c in controls))

    def _click(self, which: str) -> None:
        try:
            control = actions.control_find(self._controls(), which)
            clicked = actions.conversation_click(conversation_id=self.conversation_id,
                                                 action=control["action"],
                                                 machine=control["machine"])
        except ControlNotFound as exc:
            self.stderr.write(f"error: {exc}; /controls lists them")
            return
        if clicked.message:
            # An offered button answers as if the user had said its label.
            self.stdout.write(f"you> {clicked.message}")
            self._send(clicked.message)
            return
        machine = clicked.event["machines"][control["machine"]]
        self.stdout.write(f"{machine['name']}: {render_text(machine)}")
        self._print_controls(clicked.event["controls"])
