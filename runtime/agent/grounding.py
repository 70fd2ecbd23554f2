"""The grounding check: an answer about the domain states only what its results hold.

Every data answer (the v3 interpreter's, the eras expert's) is written by the
model in full, held back, and checked in code before the user sees a word of it:
each figure it states must stand for a number of this message's query results
(after formatting: 1,234.57 ≙ 1234.5678, 12.5 million ≙ 12,456,789; see
runtime.agent.figures), and each name it states (a capitalised word: a person,
a city, a status) must be in the results, or come from the user's own words,
their memory or the query's own conditions. On a miss the model is asked once
more, shown the result and the words it made up; if that is still ungrounded,
the user gets the plain reading of the result (`plain_reading`), never the
ungrounded text. The outcome (grounded, repaired, replaced, abstained) goes in
the node's output and so in the trace.

What it is not: it cannot know that the query answered another question than
the one asked (that is the query check's and the voting's job), nor that a
stated figure, present in the result, is attached to the wrong name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.agent.figures import Figure, as_number, figures_in
from runtime.agent.speech import looks_internal, parse_answer
from runtime.engine.node import DEFAULT_ANSWER_TOKENS, NodeContext, with_repair
from runtime.errors import LLMError
from runtime.wire import HudEventType

GROUNDED, REPAIRED, REPLACED, ABSTAINED = "grounded", "repaired", "replaced", "abstained"
"""A data answer's grounding outcomes, as the trace names them."""
NOT_CHECKED = "I haven't checked that in the database, so I can't give you a figure for it."
"""What a data question that reached no query is answered: an honest abstention."""
NO_EXACT_QUERY = ("I could not find a way to look up exactly that in the database, so I have "
                  "no figure for it. Could you ask it another way?")
"""What a data question is answered when the query it got ignores what it names (a filter,
its table): an honest abstention instead of that query's figure."""
NO_LIVE_FACTS = ("I don't have live information such as the weather or the news: I can only "
                 "look things up in our database.")
"""What a question about a live fact is answered: no tool of the agent reads one, so any
answer the model gives is made up ("The weather in Paris today is clear")."""
_LIVE_FACT = re.compile(
    r"\b(weather|forecast|temperature outside|rain(ing)? (today|tomorrow)|news|headlines|"
    r"stock price|share price|exchange rate|traffic)\b", re.IGNORECASE)
_AMOUNT = re.compile(r"\b(how many|how much|number of|count of|sum of|total|average)\b",
                     re.IGNORECASE)
REPAIR_INSTRUCTION = (
    "Your last answer stated {missing}, which the result does not contain. Answer the "
    "question again in one or two plain sentences, using only numbers and names that appear "
    "in the result exactly as they are. If the result does not answer the question, say so.")

# Capitalised words that are not names: sentence starters, pronouns, months, days, units.
_COMMON = frozenset("""
a an the this that these those there here it its i we you they he she his her their our your
my me us them yes no not none nothing all any some each every most many few both either only
also just so and or but if then than as at by for from in into of on onto to with without
about above after before below between during over under up down out off again once
what which who whom whose when where why how is are was were be been being has have had do
does did can could may might must shall should will would
sorry hello hi hey thanks thank please ok okay sure great well note however overall total
based according currently unfortunately approximately about around roughly nearly almost
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow
usd eur gbp sql id
""".split())
_NAME = re.compile(r"\b[A-Z][\w'’&-]*[A-Za-z]\b|\b[A-Z]\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+|\n\s*[-*•]?\s*)$")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Evidence:
    """What an answer may state: its results' values and the words it was given."""

    numbers: tuple[Any, ...]
    """Every number a figure may stand for: the cells, row counts, the given words' numbers."""
    words: frozenset[str]
    """Every word (lowercased) a name may be: the cells, the columns, the given words."""

    @classmethod
    def of(cls, results: Sequence[dict[str, Any]], given: Iterable[str] = ()) -> Evidence:
        """The evidence of `results` (`{columns, rows, row_count}` each) and of texts the
        user or the query gave (the question, memory, the SQL)."""
        numbers: list[Any] = []
        words: set[str] = set()
        for result in results:
            rows = result.get("rows") or []
            numbers.extend((result.get("row_count", len(rows)), len(rows)))
            words.update(_lower_words(" ".join(str(c) for c in result.get("columns") or ())))
            for row in rows:
                for cell in row:
                    if as_number(cell) is not None:
                        numbers.append(cell)
                    elif cell is not None:
                        text = str(cell)
                        words.update(_lower_words(text))
                        numbers.extend(_DIGITS.findall(text))  # a date's year and day
        for text in given:
            words.update(_lower_words(text))
            numbers.extend(f.value for f in figures_in(text))
            numbers.extend(_DIGITS.findall(text))
        return cls(numbers=tuple(numbers), words=frozenset(words))


def given_words(ctx: NodeContext, *more: str) -> list[str]:
    """What the user gave a data answer besides the result: their message, their memory
    (name, facts), and the query's own conditions (`more`: the SQL)."""
    memory = ctx.turn.memory
    remembered = [str(memory.get(k) or "") for k in ("user_name", "topic", "situation")]
    remembered.extend(str(f) for f in memory.get("facts") or ())
    return [ctx.turn.message, *remembered, *more]


def figures_vet(ctx: NodeContext, *, conversation: str, machines: str = ""
                ) -> Callable[[str], str]:
    """For an answer to a question written without a query (small talk, the user's own
    memory, a machine): one that states a figure nothing gave (the message, memory, the
    `conversation`, the `machines`) is replaced by NOT_CHECKED, so a figure never comes from
    the model's head ("The company owns 10 cars."). A question for an amount ("how many
    cars …") may take its figure from the user's own words only: not from the clock of the
    situation nor from earlier answers (the 0.5B answered "2 cars" with a 2 of the time).
    A question about a live fact (the weather, the news, a share price: no tool reads one)
    gets NO_LIVE_FACTS."""
    if _AMOUNT.search(ctx.turn.message):
        memory = ctx.turn.memory
        given = [ctx.turn.message, str(memory.get("user_name") or ""),
                 *(str(f) for f in memory.get("facts") or ()),
                 *(m["text"] for m in ctx.turn.history if m.get("role") == "user"), machines]
    else:
        given = [*given_words(ctx), conversation, machines]
    evidence = Evidence.of([], given)
    live = _LIVE_FACT.search(ctx.turn.message)

    def vet(answer: str) -> str:
        if live:
            ctx.note_fallback("no live facts", f"the message asks for {live.group(0)!r}, "
                              "which no tool reads")
            return NO_LIVE_FACTS
        made_up = [f.text for f in figures_in(answer) if not _figure_held(f, evidence.numbers)]
        if not made_up:
            return answer
        ctx.note_fallback("no figure", f"the answer stated {', '.join(made_up)} with no "
                          "query behind it")
        return NOT_CHECKED
    return vet


def _lower_words(text: str) -> set[str]:
    return {w.lower().strip("'’") for w in re.findall(r"[\w'’]+", text)}


def ungrounded(answer: str, evidence: Evidence) -> list[str]:
    """The figures and names `answer` states that the evidence does not hold, in order."""
    missing: list[str] = []
    for figure in figures_in(answer):
        if not _figure_held(figure, evidence.numbers):
            missing.append(figure.text)
    for match in _NAME.finditer(answer):
        word = match.group(0)
        lowered = word.lower().strip("'’")
        if lowered in _COMMON or lowered in evidence.words or len(lowered) < 2:
            continue
        if lowered.endswith(("'s", "’s")) and lowered[:-2] in evidence.words:
            continue
        if _SENTENCE_START.search(answer[: match.start()]) and not _next_is_name(answer,
                                                                                 match.end()):
            continue  # "Projects on hold: 3": a capitalised first word is not a name
        parts = re.split(r"[-&]", lowered)
        if len(parts) > 1 and all(p in evidence.words or not p for p in parts):
            continue
        missing.append(word)
    return list(dict.fromkeys(missing))


def _next_is_name(text: str, end: int) -> bool:
    """Whether a capitalised word follows (a two-word name such as "Lena Fischer")."""
    return bool(re.match(r"\s+[A-Z][a-z]", text[end:]))


def _figure_held(figure: Figure, numbers: Sequence[Any]) -> bool:
    return any(figure.stands_for(n) for n in numbers)


@dataclass
class Grounding:
    """How a data answer came out of the check, for the node's output and the trace."""

    outcome: str
    """grounded, repaired, replaced (by the plain reading) or abstained."""
    ungrounded: list[str] = field(default_factory=list)
    """The words of the model's first answer that the results did not hold."""
    repaired_ungrounded: list[str] = field(default_factory=list)
    """Those of the repaired answer, when it was repaired and still missed."""

    def as_dict(self) -> dict[str, Any]:
        """For the node's output (and so the trace and /api/trace)."""
        data: dict[str, Any] = {"outcome": self.outcome}
        if self.ungrounded:
            data["ungrounded"] = self.ungrounded
        if self.repaired_ungrounded:
            data["repaired_ungrounded"] = self.repaired_ungrounded
        return data


async def answer_grounded(ctx: NodeContext, prompt_text: str, *, evidence: Evidence,
                          reading: str, prompt: str = "prompt") -> tuple[str, Grounding]:
    """The model's answer from a result, checked before the user sees it; (answer, grounding).

    The answer is written whole (not streamed), checked, repaired once when it states
    what the evidence does not hold, and otherwise replaced by `reading` (the result read
    plainly). Only the final answer is sent to the user, at once.
    """
    await ctx.emit(HudEventType.STREAMING, {"held": True})
    request = ctx.request(prompt_text, prompt=prompt, max_tokens=DEFAULT_ANSWER_TOKENS)
    answer = await _answer_text(ctx, request, purpose="answer")
    first = ungrounded(answer, evidence) if answer else ["(no usable answer)"]
    grounding = Grounding(outcome=GROUNDED, ungrounded=first)
    if first and answer:
        repair = with_repair(request, answer, REPAIR_INSTRUCTION.format(
            missing=", ".join(repr(w) for w in first)))
        answer = await _answer_text(ctx, repair, purpose="grounding repair")
        again = ungrounded(answer, evidence) if answer else ["(no usable answer)"]
        grounding.outcome = REPAIRED
        if again:
            grounding.repaired_ungrounded = again
    if not answer or grounding.ungrounded and (grounding.outcome != REPAIRED
                                               or grounding.repaired_ungrounded):
        grounding.outcome = REPLACED
        ctx.note_fallback("plain reading", "the answer stated "
                          + ", ".join(grounding.repaired_ungrounded or grounding.ungrounded)
                          + ", which the result does not hold")
        answer = reading
    await ctx.delta(answer)
    return answer, grounding


async def _answer_text(ctx: NodeContext, request: Any, *, purpose: str) -> str:
    """The prose of one model answer; empty when it failed or is not for a person."""
    try:
        text = (await ctx.call(request, purpose=purpose)).text
    except LLMError:
        return ""
    answer, _, tool = parse_answer(text)
    if tool is not None or looks_internal(answer):
        return ""
    return answer
