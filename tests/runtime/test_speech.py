"""What reaches the user of a streamed answer (AnswerStream), and how an answer is split up."""

from __future__ import annotations

import asyncio

import pytest

from runtime.agent.speech import AnswerStream, parse_answer

BUTTONS_LINE = 'BUTTONS: [{"label": "Yes", "action": "yes"}, "No thanks"]'


def stream_through(pieces: list[str], *, finish: bool = True) -> list[str]:
    """Feed the pieces through an AnswerStream; return what it sent on, chunk by chunk."""
    sent: list[str] = []

    async def sink(chunk: str) -> None:
        sent.append(chunk)

    async def run() -> None:
        stream = AnswerStream(sink)
        for piece in pieces:
            await stream.feed(piece)
        if finish:
            await stream.finish()

    asyncio.run(run())
    return sent


def chars(text: str) -> list[str]:
    """The text as one-character pieces."""
    return list(text)


def test_plain_text_is_forwarded_as_it_arrives():
    """Plain answer text is passed on piece by piece, before finish()."""
    sent = stream_through(["Hello ", "there, ", "Ada."], finish=False)
    assert sent == ["Hello ", "there, ", "Ada."]


def test_plain_text_char_by_char_arrives_whole():
    """Fed character by character, the whole answer arrives, newlines included."""
    text = "Two lines:\nfirst\nsecond"
    assert "".join(stream_through(chars(text))) == text


@pytest.mark.parametrize(
    "pieces",
    [
        ["TOOL query_db: SELECT COUNT(*) FROM customers"],
        ["TO", "OL", " query_db: ", "SELECT 1"],
        chars("  TOOL query_db: SELECT 1"),
    ],
)
def test_tool_answer_is_held_back_entirely(pieces):
    """An answer that is a TOOL line never reaches the user, not even at finish()."""
    assert stream_through(pieces) == []


def test_short_undecided_answer_is_flushed_at_finish():
    """An answer too short to tell from TOOL is sent at finish()."""
    assert stream_through(["TO"], finish=False) == []
    assert stream_through(["TO"]) == ["TO"]


@pytest.mark.parametrize(
    "pieces",
    [
        ["Sure, let's weigh it up.", "\n" + BUTTONS_LINE],
        ["Sure, let's weigh it up.\n", "BUT", "TONS", ": [", '{"label": "Yes"}]'],
        chars("Sure, let's weigh it up.\n" + BUTTONS_LINE),
    ],
)
def test_buttons_line_is_never_forwarded(pieces):
    """No part of a trailing BUTTONS line (nor its newline) is sent, however it is split."""
    sent_before_finish = stream_through(pieces, finish=False)
    sent = stream_through(pieces)
    assert "".join(sent) == "Sure, let's weigh it up."
    assert "".join(sent_before_finish) == "Sure, let's weigh it up."
    for chunk in sent:
        assert "B" not in chunk and "\n" not in chunk


def test_partial_marker_is_held_then_released_when_not_buttons():
    """A newline that might start the marker is held, then sent once it turns out to be text."""
    pieces = ["Line one", "\n", "BUT", "ter is nice"]
    assert stream_through(pieces[:3], finish=False) == ["Line one"]
    assert "".join(stream_through(pieces)) == "Line one\nBUTter is nice"


def test_buttons_line_on_the_first_line_is_held_back():
    """An answer that is only a BUTTONS line sends nothing."""
    assert stream_through(chars(BUTTONS_LINE)) == []


def test_indented_buttons_line_is_not_forwarded():
    """A BUTTONS line with leading blanks (which parse_answer accepts) is not sent either."""
    text = "Pick one.\n  " + BUTTONS_LINE
    assert parse_answer(text)[0] == "Pick one."
    assert "BUTTONS" not in "".join(stream_through(chars(text)))


def test_finish_flushes_held_text():
    """finish() sends what was held back as a possible marker start."""
    assert stream_through(["All done\n"], finish=False) == ["All done"]
    assert "".join(stream_through(["All done\n", "BUTT"])) == "All done\nBUTT"


# --- parse_answer -------------------------------------------------------------------


def test_parse_answer_plain_text():
    """Plain text is the answer, with no buttons and no tool."""
    assert parse_answer("  Hello, Ada!\n") == ("Hello, Ada!", [], None)


def test_parse_answer_splits_off_buttons():
    """A BUTTONS line becomes normalized buttons and leaves the answer text."""
    answer, buttons, tool = parse_answer("Shall we?\nMore text.\n" + BUTTONS_LINE)
    assert (answer, tool) == ("Shall we?\nMore text.", None)
    assert buttons == [
        {"label": "Yes", "action": "yes", "go": "", "payload": {}, "machine": ""},
        {"label": "No thanks", "action": "no-thanks", "go": "", "payload": {}, "machine": ""},
    ]


def test_parse_answer_drops_unusable_buttons():
    """Broken JSON gives no buttons; unusable items are skipped; the line is still removed."""
    assert parse_answer("Ok.\nBUTTONS: [oops") == ("Ok.", [], None)
    answer, buttons, _ = parse_answer('Ok.\nBUTTONS: [{}, 3, {"label": "Go"}]')
    assert answer == "Ok."
    assert [b["action"] for b in buttons] == ["go"]


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        (
            "TOOL query_db: SELECT COUNT(*) FROM customers",
            ("query_db", "SELECT COUNT(*) FROM customers"),
        ),
        ("  TOOL query_db:SELECT 1\n", ("query_db", "SELECT 1")),
        ("TOOL query_db: SELECT name\nFROM customers", ("query_db", "SELECT name\nFROM customers")),
    ],
)
def test_parse_answer_tool_call(text, tool):
    """A TOOL line gives the tool name and its argument, and no answer or buttons."""
    assert parse_answer(text) == ("", [], tool)


def test_parse_answer_tool_word_in_text_is_not_a_call():
    """Text that merely mentions TOOL later on is an ordinary answer."""
    assert parse_answer("Use the TOOL query_db: it helps.") == (
        "Use the TOOL query_db: it helps.",
        [],
        None,
    )


# --- what never reaches a user -------------------------------------------------------


@pytest.mark.parametrize(("text", "found"), [
    ('Here you go: {"route": "reflex"}', "JSON"),
    ("I ran SELECT name FROM customers for you.", "SQL"),
    ("Oops (KeyError: 'sql')", "exception name"),
    ("Traceback (most recent call last):", "exception name"),
    ("Select one of the buttons below, from the top.", ""),
    ("There are 120 customers.", ""),
])
def test_looks_internal(text, found):
    """JSON objects, SQL statements and exception names are found; prose is not flagged."""
    from runtime.agent.speech import looks_internal

    assert looks_internal(text) == found


def test_no_user_facing_text_can_carry_an_exception_name():
    """Every sentence a user can be told when something fails is plain, whatever the
    failure's own message says (its class, the endpoint's URL, SQL)."""
    from runtime.agent.nodes import interpreter, output, pa, thinker
    from runtime.agent.speech import looks_internal
    from runtime.conversations.turns import failure_answer
    from runtime.errors import FrameLimitExceeded, LLMError, LLMTimeout, NodeFailed

    nasty = "KeyError: 'sql' at http://127.0.0.1:9/v1 after SELECT * FROM x"
    errors = [NodeFailed("thinker", 3, ValueError(nasty)),
              NodeFailed("input", 1, LLMTimeout(nasty)),
              NodeFailed("pa", 2, LLMError(nasty)),
              FrameLimitExceeded(nasty), LLMError(nasty)]
    sentences = [failure_answer(e) for e in errors]
    sentences += [interpreter.database_trouble(e) for e in (
        nasty, "query refused: only SELECT", "interrupted: time limit", "cancelled",
        "could not open database")]
    sentences += [thinker.PLAIN_FALLBACK, thinker.NO_QUERY, output.REFLEX_FALLBACK,
                  pa.PLAIN_FALLBACK, pa.DEFAULT_THINKING]
    for sentence in sentences:
        assert looks_internal(sentence) == "", sentence
        assert "127.0.0.1" not in sentence and "KeyError" not in sentence


def test_an_answer_that_echoes_the_message_is_asked_again_and_never_shown(graphs):
    """"I feel tired" -> "I'm feeling tired." is held, asked again once, and the reply sent."""
    from runtime.agent.nodes.output import OutputNode
    from tests.runtime.test_nodes import ScriptedModel, run_node

    result, ctx, _, deltas = run_node(
        OutputNode, "output", message="I feel tired",
        llm=ScriptedModel("I'm feeling tired.", "Sorry to hear that. Maybe rest a little?"))
    assert "".join(deltas) == "Sorry to hear that. Maybe rest a little?"
    assert [c.purpose for c in ctx.calls] == ["stream", "echo repair"]
    assert ctx.calls[1].request["messages"][-2]["content"] == "I'm feeling tired."


def test_an_answer_that_echoes_twice_is_replaced_by_a_plain_reply(graphs):
    """A second echo is not shown either: a plain reply is."""
    from runtime.agent.nodes.output import OutputNode
    from runtime.agent.speech import ECHO_REPLY
    from tests.runtime.test_nodes import ScriptedModel, run_node

    result, ctx, _, deltas = run_node(OutputNode, "output", message="I feel tired",
                                      llm=ScriptedModel("I'm feeling tired.", "You feel tired."))
    assert "".join(deltas) == ECHO_REPLY
    assert "plain reply" in ctx.fallback


@pytest.mark.parametrize(("message", "answer", "echo"), [
    ("I feel tired", "I'm feeling tired.", True),
    ("my name is Ada", "Your name is Ada.", True),
    ("I feel tired", "Sorry to hear you are tired. Maybe take a short break?", False),
    ("hello", "Hello!", False),
    ("my name is Ada", "Nice to meet you, Ada!", False),
    ("how many customers are there?", "There are 120 customers.", False),
])
def test_echoes_is_a_similarity_of_content_words(message, answer, echo):
    """An echo says nothing the message did not, in about as many words; greetings are not."""
    from runtime.agent.speech import echoes

    assert echoes(message, answer) is echo


def test_a_reply_that_is_no_echo_streams_before_it_ends():
    """Holding back ends as soon as the answer says something new: it still streams."""
    from runtime.agent.speech import may_echo

    assert may_echo("I feel tired", "I'm feeling")
    assert not may_echo("I feel tired", "Sorry to hear that, maybe")
