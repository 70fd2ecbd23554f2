"""The builtin offline model: perception, directing, SQL, thinking, memory and streaming."""

from __future__ import annotations

import asyncio
import json

import pytest

from runtime.agent import machines as m
from runtime.agent.builtin import (
    BuiltinProvider,
    count_tokens,
    direct,
    interpret,
    memorize,
    parse_schema,
    perceive,
    plan_steps,
    remembered_memory,
    respond,
    sections,
    speak,
    sql_for,
    think,
)
from runtime.agent.nodes.interpreter import result_table
from runtime.agent.speech import parse_answer
from runtime.conversations.models import Conversation
from runtime.domain.database import Column, ErasDatabase, TableSchema
from runtime.domain.sqlguard import guard_sql
from runtime.engine.node import sections as prompt_sections
from runtime.llm.base import ChatMessage, LLMRequest
from tests.helpers import send


def col(
    name: str,
    type_: str = "INTEGER",
    *,
    pk: bool = False,
    ref: str | None = None,
    nullable: bool = False,
) -> Column:
    """A schema column."""
    return Column(name=name, type=type_, nullable=nullable, primary_key=pk, references=ref)


def make_schema_text() -> str:
    """Schema text as the thinker gets it: TableSchema.as_text() of a few eras-like tables."""
    tables = [
        TableSchema(
            "customers",
            (
                col("id", pk=True),
                col("name", "TEXT"),
                col("city", "TEXT", nullable=True),
                col("industry", "TEXT"),
            ),
            40,
        ),
        TableSchema(
            "projects",
            (
                col("id", pk=True),
                col("customer_id", ref="customers.id"),
                col("name", "TEXT"),
                col("status", "TEXT"),
                col("budget", "REAL"),
            ),
            300,
        ),
        TableSchema(
            "time_entries",
            (
                col("id", pk=True),
                col("project_id", ref="projects.id"),
                col("hours", "REAL"),
                col("note", "", nullable=True),
            ),
            1,
        ),
    ]
    return "\n".join(t.as_text() for t in tables)


def make_request(role_line: str, json_output: bool = False, **parts) -> LLMRequest:
    """A request as a node builds it: a system prompt and a `## Section` user message."""
    return LLMRequest(
        messages=(ChatMessage("system", role_line), ChatMessage("user", prompt_sections(**parts))),
        json_output=json_output,
    )


def machines_after(*calls: dict) -> dict:
    """Machines after applying the given director tool calls to none."""
    machines: dict = {}
    for call in calls:
        machines = m.apply_tool_call(machines, call)
    return machines


# --- perceive -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("hello there", "greeting"),
        ("Good morning!", "greeting"),
        ("thanks a lot!", "thanks"),
        ("bye for now", "farewell"),
        ("my name is Ada", "introduction"),
    ],
)
def test_perceive_routes_social_messages_to_reflex(message, intent):
    """Greetings, thanks, farewells and introductions are answered by reflex."""
    perception = perceive(message)
    assert (perception["intent"], perception["route"]) == (intent, "reflex")


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("how many customers are there?", "question"),
        ("What is my name", "question"),
        ("give me a counter", "request"),
        ("make a checklist for milk", "request"),
        ("I like trains", "statement"),
    ],
)
def test_perceive_routes_questions_and_requests_to_director(message, intent):
    """Questions, requests and statements go to the director."""
    perception = perceive(message)
    assert (perception["intent"], perception["route"]) == (intent, "director")


def test_perceive_language_tone_and_topic():
    """German is detected, a sad mood reads as negative, topics come from the message."""
    assert perceive("Hallo, wie geht es dir?")["language"] == "de"
    assert perceive("bonjour mon ami")["language"] == "fr"
    assert perceive("hello")["language"] == "en"
    sad = perceive("I'm feeling sad")
    assert (sad["tone"], sad["topic"]) == ("negative", "feelings")
    assert perceive("I am so happy")["tone"] == "positive"
    assert perceive("fix this asap")["tone"] == "urgent"
    assert perceive("what is the weather")["tone"] == "neutral"
    assert perceive("how many customers are there?")["topic"] == "customers"
    assert perceive("let's talk about Jazz music")["topic"] == "jazz music"


@pytest.mark.parametrize("message", ["No thanks", "no, thank you", "nope", "Not now."])
def test_a_decline_is_not_thanked(message):
    """Declining an offer is a social reflex answered with "all right", never "you're welcome"."""
    perception = perceive(message)
    assert (perception["intent"], perception["route"]) == ("statement", "reflex")
    answer = speak({"message": message, "perception": json.dumps(perception)})
    assert answer == "All right. Let me know if you need anything."
    assert speak({"message": "thanks!"}) == "You're welcome!"


# --- direct -------------------------------------------------------------------------


def test_direct_makes_a_counter():
    """A counter request is one add_state call with +1/-1/reset buttons and a start value."""
    plan = direct("give me a counter starting at 5", {})
    assert plan["plan"] == "answer"
    [call] = plan["tool_calls"]
    assert call["name"] == "add_state"
    assert call["args"]["machine_id"] == "counter"
    assert call["args"]["data"] == {"count": 5}
    assert [b["action"] for b in call["args"]["buttons"]] == ["inc", "dec", "reset"]
    counter = machines_after(call)["counter"]
    assert m.render_text(counter) == "Count: 5"
    assert direct("give me a counter", {})["tool_calls"][0]["args"]["data"] == {"count": 0}


def test_direct_makes_a_toggle():
    """A toggle request adds an off and an on state, off first and initial."""
    plan = direct("I want a switch", {})
    assert [(c["name"], c["args"]["state"]) for c in plan["tool_calls"]] == [
        ("add_state", "off"),
        ("add_state", "on"),
    ]
    toggle = machines_after(*plan["tool_calls"])["toggle"]
    assert (toggle["state"], toggle["initial"]) == ("off", "off")
    assert (
        m.click({"toggle": toggle}, machine_id="toggle", action="turn_on")["toggle"]["state"]
        == "on"
    )


def test_direct_makes_a_checklist_of_the_named_items():
    """The items of "a checklist for milk, eggs and bread" become the checklist's items."""
    plan = direct("make a checklist for milk, eggs and bread", {})
    [call] = plan["tool_calls"]
    assert call["args"]["data"] == {"items": {"milk": False, "eggs": False, "bread": False}}
    assert [b["payload"] for b in call["args"]["buttons"][:3]] == [
        {"toggle": "items.milk"},
        {"toggle": "items.eggs"},
        {"toggle": "items.bread"},
    ]
    checklist = machines_after(call)["checklist"]
    assert m.render_text(checklist) == "Checklist: [ ] milk, [ ] eggs, [ ] bread"
    placeholder = direct("give me a checklist", {})["tool_calls"][0]["args"]["data"]["items"]
    assert list(placeholder) == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("message", "tool"),
    [("reset the counter", "reset_machine"), ("remove the counter", "destroy_machine")],
)
def test_direct_resets_or_removes_an_existing_machine(message, tool):
    """Reset/remove of an existing machine names the machine listed in the prompt."""
    existing = machines_after(*direct("give me a counter", {})["tool_calls"])
    existing = m.add_state(existing, machine_id="my-counter", state="s", text="Count: {count}")
    del existing["counter"]
    summary = m.machines_summary(existing)
    plan = direct(message, {"machines": summary})
    assert plan["tool_calls"] == [{"name": tool, "args": {"machine_id": "my-counter"}}]
    after = m.apply_tool_call(existing, plan["tool_calls"][0])
    assert ("my-counter" in after) is (tool == "reset_machine")


def test_direct_plans_a_query_for_database_questions():
    """A question about the eras domain gets plan `query` and no tool calls."""
    assert direct("how many customers are there?", {}) == {
        "plan": "query",
        "goal": "answer from the eras database",
        "tool_calls": [],
    }
    assert direct("tell me a joke", {})["plan"] == "answer"


@pytest.mark.parametrize(("message", "verb"), [("reset the counter", "reset"),
                                              ("remove the counter", "remove")])
def test_direct_leaves_other_machines_alone(message, verb):
    """Resetting or removing a counter when only a switch exists touches nothing, and the
    thinker says there is no counter instead of "Done"."""
    switch = machines_after(*direct("give me a switch", {})["tool_calls"])
    summary = m.machines_summary(switch)
    plan = direct(message, {"machines": summary})
    assert plan == {"plan": "answer", "goal": f"tell the user there is no counter to {verb}",
                    "tool_calls": []}
    answer = think(message, {"plan": "answer", "goal": plan["goal"], "machines": summary})
    assert answer == f"There is no counter to {verb}."
    nothing = direct(message, {"machines": m.machines_summary({})})
    assert nothing["tool_calls"] == []


def test_think_says_what_became_of_a_machine():
    """A reset or removal is confirmed only when the machines after the director show it."""
    counter = machines_after(*direct("give me a counter", {})["tool_calls"])
    remove = direct("remove the counter", {"machines": m.machines_summary(counter)})
    after = m.apply_tool_call(counter, remove["tool_calls"][0])
    assert think("remove the counter", {"goal": remove["goal"],
                                        "machines": m.machines_summary(after)}) == (
        "I removed the counter.")
    assert think("remove the counter", {"goal": remove["goal"],
                                        "machines": m.machines_summary(counter)}) == (
        "I could not remove the counter.")
    assert think("reset the counter", {"machines": m.machines_summary(counter)}) == (
        "Done — the counter is back at its start.")


# --- SQL ----------------------------------------------------------------------------


def test_parse_schema_reads_tables_and_columns_from_as_text():
    """parse_schema reads TableSchema.as_text() back into tables and column names."""
    tables = parse_schema(make_schema_text())
    assert [(t.name, t.columns) for t in tables] == [
        ("customers", ("id", "name", "city", "industry")),
        ("projects", ("id", "customer_id", "name", "status", "budget")),
        ("time_entries", ("id", "project_id", "hours", "note")),
    ]


@pytest.mark.parametrize(
    ("message", "sql"),
    [
        ("how many customers are there?", "SELECT COUNT(*) AS count FROM customers"),
        (
            "how many active projects are there?",
            "SELECT COUNT(*) AS count FROM projects WHERE status = 'active'",
        ),
        (
            "show the top 3 projects by budget",
            "SELECT name, status, budget FROM projects ORDER BY budget DESC LIMIT 3",
        ),
        (
            "the 5 largest projects",
            "SELECT name, status, budget FROM projects ORDER BY budget DESC LIMIT 5",
        ),
        (
            "list the customers",
            "SELECT name, city, COUNT(*) OVER () AS total_rows FROM customers ORDER BY name "
            "LIMIT 20",
        ),
        (
            "list projects on hold",
            "SELECT name, status, COUNT(*) OVER () AS total_rows FROM projects WHERE status = "
            "'on_hold' ORDER BY name LIMIT 20",
        ),
        (
            "what is the total hours of time entries",
            "SELECT SUM(hours) AS sum_hours FROM time_entries",
        ),
    ],
)
def test_sql_for_questions(message, sql):
    """sql_for turns simple questions into one read-only SELECT over the described tables."""
    generated = sql_for(message, make_schema_text())
    assert generated == sql
    assert guard_sql(generated, dialect="sqlite").sql == sql


def test_sql_for_unknown_table_gives_no_query():
    """A question about no described table gets no query, and the thinker names the tables."""
    assert sql_for("how many invoices?", make_schema_text()) == ""
    answer = think("how many invoices?", {"plan": "query",
                                          "database schema": make_schema_text()})
    assert answer == ("I could not tell which table that is about. The tables are: "
                      "customers, projects, time_entries.")


def test_sql_for_runs_against_the_demo_database(settings):
    """Over the real eras schema, the count query runs and matches the described row count."""
    db = ErasDatabase(settings.ERAS_DATABASE_URL)
    schema = "\n".join(s.as_text() for s in db.describe_all())
    result = db.query(sql_for("how many customers are there?", schema))
    assert result.rows == ((db.describe("customers").row_count,),)


@pytest.mark.parametrize(("message", "sql"), [
    ("delete all customers", "DELETE FROM customers"),
    ("please remove the projects", "DELETE FROM projects"),
    ("change the name of project 3", "UPDATE projects SET id = id"),
    ("can you rename customer 5?", "UPDATE customers SET id = id"),
    ("add a new customer", "INSERT INTO customers DEFAULT VALUES"),
    ("drop the projects table", "DROP TABLE projects"),
])
def test_think_passes_a_write_request_on_to_be_refused(message, sql):
    """A request to change data becomes the write it asks for, as the eras planner does: the
    read-only layers refuse it (and the user is told plainly), never an unrelated list."""
    parts = {"plan": "query", "database schema": make_schema_text()}
    assert think(message, parts) == f"TOOL query_db: {sql}"
    tables = "customers, projects, time_entries"
    assert plan_steps({"task": message, "tables": tables})["steps"] == [
        {"tool": "query", "args": {"sql": sql}}]


def test_questions_that_change_nothing_are_not_writes():
    """Reading verbs, "add up" and a topic change are not write requests."""
    parts = {"plan": "query", "database schema": make_schema_text()}
    for message in ("add up the hours of time entries", "list the customers",
                    "update me on the projects"):
        assert think(message, parts).startswith("TOOL query_db: SELECT ")
    assert plan_steps({"task": "change the topic to projects", "tables": "projects"}) == {
        "steps": [{"tool": "describe", "args": {"table": "projects"}}]}


# --- think --------------------------------------------------------------------------


def test_think_answers_name_from_memory():
    """The thinker answers "what is my name" from memory, or says it does not know."""
    parts = {"plan": "answer", "memory": json.dumps({"user_name": "Ada"})}
    assert think("what is my name?", parts) == "Your name is Ada."
    unknown = think("what is my name?", {"plan": "answer", "memory": json.dumps({"user_name": ""})})
    assert unknown.startswith("I don't know your name yet")


def test_think_returns_a_tool_line_for_a_query_plan():
    """With plan `query` and a schema the thinker answers with one `TOOL query_db:` line."""
    parts = {"plan": "query", "database schema": make_schema_text()}
    answer = think("how many customers are there?", parts)
    assert answer == "TOOL query_db: SELECT COUNT(*) AS count FROM customers"
    assert parse_answer(answer)[2] == ("query_db", "SELECT COUNT(*) AS count FROM customers")
    without_schema = think("how many customers are there?", {"plan": "query"})
    assert "TOOL" not in without_schema


def test_think_offers_buttons_for_should_i():
    """A "should I ...?" question ends with a BUTTONS line parse_answer understands."""
    answer = think("should I take the job?", {"plan": "answer"})
    assert "\nBUTTONS: [" in answer
    text, buttons, tool = parse_answer(answer)
    assert tool is None
    assert "BUTTONS" not in text
    assert [b["action"] for b in buttons] == ["weigh_up", "skip"]


# --- memorize -----------------------------------------------------------------------


def make_memory(**fields) -> str:
    """Memory JSON as the memorizer's prompt holds it."""
    memory = {
        "user_name": "",
        "user_mood": "",
        "topic": "",
        "topic_history": [],
        "situation": "Monday 09:00",
        "language": "en",
        "style_hint": "",
        "facts": [],
    }
    memory.update(fields)
    return json.dumps(memory)


@pytest.mark.parametrize(
    ("message", "changes"),
    [
        ("my name is ada", {"user_name": "Ada"}),
        ("I'm feeling tired today", {"user_mood": "tired"}),
        ("let's talk about cooking", {"topic": "cooking", "topic_history": ["music", "cooking"]}),
        ("remember that my cat is called Tom.", {"facts": ["likes tea", "my cat is called Tom"]}),
        ("please be brief", {"style_hint": "brief"}),
        ("can you explain more", {"style_hint": "detailed"}),
        ("ich bin müde", {"language": "de"}),
    ],
)
def test_memorize_updates_one_field_and_keeps_the_rest(message, changes):
    """Each kind of message changes its memory field(s) and leaves every other one as it was."""
    before = json.loads(make_memory(topic="music", topic_history=["music"], facts=["likes tea"]))
    after = remembered_memory({"memory": json.dumps(before), "message": message})
    assert after == {**before, **changes}


def test_memorize_answers_what_changed():
    """memorize() answers the memorizer's contract: changed fields set, the rest empty."""
    before = make_memory(topic="music", topic_history=["music"], facts=["likes tea"])
    update = memorize({"memory": before, "message": "remember that my cat is called Tom."})
    assert update == {"user_name": "", "user_mood": "", "topic": "", "language": "",
                      "style_hint": "", "new_facts": ["my cat is called Tom"]}
    assert memorize({"memory": before, "message": "my name is Bo"})["user_name"] == "Bo"


def test_memorize_same_topic_is_not_repeated_in_history():
    """Naming the current topic again does not grow topic_history."""
    memory = make_memory(topic="cooking", topic_history=["cooking"])
    after = remembered_memory({"memory": memory, "message": "let's talk about cooking"})
    assert after["topic_history"] == ["cooking"]
    assert memorize({"memory": memory, "message": "let's talk about cooking"})["topic"] == ""


@pytest.mark.parametrize("message", [
    "what do you remember about me?",
    "What do you know about me",
    "do you remember my name?",
    "do you still remember that my cat is called Tom?",
    "remember what I said?",
    "I don't remember the name of it",
])
def test_memory_questions_are_not_stored_as_facts(message):
    """Asking what is remembered gives no fact to remember; the memory stays as it was."""
    before = make_memory(user_name="Ada", facts=["my cat is called Tom"])
    assert remembered_memory({"memory": before, "message": message}) == json.loads(before)
    assert memorize({"memory": before, "message": message})["new_facts"] == []


def test_memory_questions_are_answered_from_memory():
    """"What do you remember about me?" is answered with what is known, not "Got it"."""
    parts = {"plan": "answer", "memory": make_memory(user_name="Ada",
                                                     facts=["my cat is called Tom"])}
    assert think("what do you remember about me?", parts) == (
        "I know that your name is Ada; your cat is called Tom.")
    assert think("do you remember that my cat is called Tom?", parts) == (
        "Yes — you told me that your cat is called Tom.")
    assert think("do you remember my name?", parts) == "Your name is Ada."
    assert think("what do you know about me?", {"plan": "answer", "memory": make_memory()}) == (
        "I don't know anything about you yet.")
    assert think("can you remember that I like tea?", parts) == (
        "Got it — I'll remember that you like tea.")
    assert remembered_memory({"memory": make_memory(), "message": "can you remember that I "
                              "like tea?"})["facts"] == ["I like tea"]
    assert "told me" not in think("do you know a good joke?", parts)


# --- interpret / speak ----------------------------------------------------------------


def test_interpret_a_count():
    """A one-cell count result is read out as "There are N <things>."."""
    result = {"columns": ["count"], "rows": [[40]], "row_count": 1, "truncated": False}
    parts = {"question": "how many customers are there?",
             "sql": "SELECT COUNT(*) AS count FROM customers", "result": result_table(result)}
    assert interpret(parts) == "There are 40 customers."


def test_interpret_rows_and_nothing():
    """Several rows are listed with a total; an empty result says so."""
    result = {
        "columns": ["name", "city"],
        "rows": [["Acme", "Oslo"], ["Beta", None]],
        "row_count": 2,
        "truncated": False,
    }
    assert interpret({"question": "list customers", "result": result_table(result)}) == (
        "I found 2 results:\n- Acme — Oslo\n- Beta"
    )
    assert interpret({"question": "x", "result": ""}) == "The query returned nothing."


@pytest.mark.parametrize(("question", "where", "value", "answer"), [
    ("how many projects are active?", " WHERE status = 'active'", 157,
     "There are 157 active projects."),
    ("how many active projects are there?", " WHERE status = 'active'", 157,
     "There are 157 active projects."),
    ("how many projects are on hold?", " WHERE status = 'on_hold'", 12,
     "There are 12 projects on hold."),
    ("how many customers are in Berlin?", " WHERE (city = 'Berlin' OR country = 'Berlin')", 7,
     "There are 7 customers in Berlin."),
    ("how many customers are named O'Neil?", " WHERE name = 'O''Neil'", 1,
     "There is 1 customer named O'Neil."),
    ("how many projects are late?", "", 300,
     "I could not work out how to count only the ones you asked about (late), so I have no "
     "number for that."),
    ("how many invoices will we send in 2031?",
     " WHERE issued_on >= '2031-01-01' AND issued_on < '2032-01-01'", 0,
     "The database has no invoices issued in 2031."),
    ("how many customers do we have in total?", "", 120, "There are 120 customers."),
])
def test_interpret_a_count_says_what_was_counted(question, where, value, answer):
    """A count names exactly the qualifiers its query filtered on, says none as none, and
    never passes off an unfiltered count as the answer to a qualified question: it gives
    no number then (it would be a made-up figure for what was asked)."""
    table = next(t for t in ("customers", "invoices", "projects") if t[:-1] in question)
    result = {"columns": ["count"], "rows": [[value]], "row_count": 1, "truncated": False}
    parts = {"question": question, "sql": f"SELECT COUNT(*) AS count FROM {table}{where}",
             "result": result_table(result)}
    assert interpret(parts) == answer


def test_interpret_a_capped_list_says_the_total(settings):
    """A list cut at its LIMIT says the real total ("I found 120 results; here are the first
    10"), not the LIMIT; without a total it says "at least"; a top-N list is the top N."""
    db = ErasDatabase(settings.ERAS_DATABASE_URL)
    schema = "\n".join(s.as_text() for s in db.describe_all())
    sql = sql_for("list all customers", schema)
    result = db.query(sql)
    table = result_table({"columns": list(result.columns), "rows": [list(r) for r in result.rows],
                          "row_count": len(result.rows), "truncated": result.truncated})
    answer = interpret({"question": "list all customers", "sql": sql, "result": table})
    total = db.describe("customers").row_count
    assert answer.startswith(f"I found {total} results; here are the first 10:\n- ")
    assert "total_rows" not in answer and f"— {total}" not in answer
    rows = [[f"Customer {i}", "Oslo"] for i in range(20)]
    capped = {"columns": ["name", "city"], "rows": rows, "row_count": 20, "truncated": False}
    assert interpret({"question": "list customers", "result": result_table(capped),
                      "sql": "SELECT name, city FROM customers LIMIT 20"}).startswith(
        "I found at least 20 results; here are the first 10:")
    top = {"columns": ["name", "budget"], "rows": rows[:3], "row_count": 3, "truncated": False}
    assert interpret({"question": "top 3 projects", "result": result_table(top),
                      "sql": "SELECT name, budget FROM projects ORDER BY budget DESC LIMIT 3"}
                     ).startswith("Here are the top 3:\n- Customer 0")


def test_speak_uses_the_known_name():
    """The output voice greets by the name in the context summary."""
    parts = {"message": "hi", "context summary": "the user's name is Ada; mood: fine"}
    assert speak(parts) == "Hello, Ada! How can I help you today?"
    assert speak({"message": "thanks!"}) == "You're welcome!"


# --- respond ------------------------------------------------------------------------


def test_sections_reads_node_prompts():
    """sections() parses exactly what runtime.engine.node.sections writes."""
    body = prompt_sections(context_summary="new user", message="hi\nthere", memory={"a": 1})
    assert sections(body) == {
        "context summary": "new user",
        "message": "hi\nthere",
        "memory": '{"a": 1}',
    }


def test_respond_dispatches_on_the_role_line():
    """respond() answers as the node named in "You are the <node>" of the system prompt."""
    perception = json.loads(respond(make_request("You are the input node.", message="hello")))
    assert perception["route"] == "reflex"
    plan = json.loads(respond(make_request("You are the director.", message="give me a counter")))
    assert plan["tool_calls"][0]["args"]["machine_id"] == "counter"
    memory = json.loads(
        respond(
            make_request(
                "You are the memorizer.",
                memory=make_memory(),
                message="my name is Bo",
                answer="Hi Bo",
            )
        )
    )
    assert memory["user_name"] == "Bo"
    assert "situation" not in memory  # the memorizer says what changed, never the situation
    thought = respond(make_request("You are the thinker.", plan="answer", message="should I go?"))
    assert "BUTTONS:" in thought
    assert respond(make_request("You are the output voice.", message="bye")).startswith("Goodbye")


def test_respond_to_an_unknown_prompt():
    """An unrecognised prompt gets a JSON error when JSON was asked for, else a plain note."""
    assert json.loads(respond(make_request("Be a pirate.", json_output=True, message="x"))) == {
        "error": "the builtin model does not know this prompt"
    }
    assert "do not recognise this prompt" in respond(make_request("Be a pirate.", message="x"))


# --- provider -----------------------------------------------------------------------


def test_count_tokens_counts_words_and_punctuation():
    """Tokens are words and punctuation marks, deterministically."""
    assert count_tokens("Hello, Ada!") == 4
    assert count_tokens("") == 0


def test_builtin_provider_stream_pieces_join_to_the_completion():
    """stream() delivers pieces that join to the completion text, with deterministic usage."""
    request = make_request("You are the thinker.", plan="answer", message="should I go?")
    provider = BuiltinProvider(model="offline")

    async def run():
        pieces: list[str] = []

        async def on_delta(piece: str) -> None:
            pieces.append(piece)

        completion = await provider.stream(request, on_delta)
        return pieces, completion

    pieces, completion = asyncio.run(run())
    assert len(pieces) > 5
    assert "".join(pieces) == completion.text == respond(request)
    assert (completion.provider, completion.model) == ("builtin", "offline")
    assert completion.usage.completion_tokens == count_tokens(completion.text)
    assert completion.usage.prompt_tokens == sum(
        count_tokens(msg.content) for msg in request.messages
    )
    again = asyncio.run(provider.complete(request))
    assert (again.text, again.usage) == (completion.text, completion.usage)


# --- the whole v3-framed graph ----------------------------------------------------------


@pytest.mark.parametrize("message", ["delete all customers", "change the name of project 3"])
def test_v3_refuses_a_change_request_plainly(conversation, eras_path, message):
    """On v3-framed a request to change data is refused plainly (the thinker's write reaches
    the guard), not answered with an unrelated list, and nothing changes."""
    before = eras_path.read_bytes()
    result = send(conversation.id, message)
    assert result.answer == "I can only read the database, not change it."
    thinker = next(r for r in result.trace.frames if r.node == "thinker").output
    assert thinker["tool_used"] and "only reading is allowed" in thinker["error"]
    assert eras_path.read_bytes() == before


def test_v3_removing_a_missing_machine_touches_nothing(conversation):
    """With only a switch, "remove the counter" and "reset the counter" keep the switch and say
    there is no counter; removing the switch then removes it."""
    send(conversation.id, "give me a switch")
    switch = Conversation.objects.get(pk=conversation.id).ui_state["machines"]
    for message, answer in (("remove the counter", "There is no counter to remove."),
                            ("reset the counter", "There is no counter to reset.")):
        assert send(conversation.id, message).answer == answer
        assert Conversation.objects.get(pk=conversation.id).ui_state["machines"] == switch
    assert send(conversation.id, "remove the switch").answer == "I removed the toggle."
    assert Conversation.objects.get(pk=conversation.id).ui_state["machines"] == {}


def test_v3_memory_question_is_answered_and_not_stored(conversation):
    """"What do you remember about me?" is answered from memory and adds no fact."""
    send(conversation.id, "remember that my cat is called Tom")
    answer = send(conversation.id, "what do you remember about me?").answer
    assert answer == "I know that your cat is called Tom."
    assert Conversation.objects.get(pk=conversation.id).memory["facts"] == [
        "my cat is called Tom"]
