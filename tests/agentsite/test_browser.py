"""The chat page in a real browser: Playwright driving Debian's Chromium against a live daphne.

The server is a real `daphne` process from `tests.live`, with its own
migrated SQLite database in a temporary folder (graphs loaded, one user made),
so the test sees exactly what `make run` serves: the page, its static files,
the `/ws` socket and the builtin model. Chromium is the system one
(`apt-get install -y chromium`); `playwright install` is never used. Without
Chromium the test is skipped locally and fails under CI.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import PASSWORD, USERNAME, LiveServer, live_daphne

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOT = Path("/tmp/chat.png")
XSS = "<img src=x onerror=alert(1)>"
TOP_CUSTOMER = "Summit Broadcasting"
"""The demo's customer with the most projects (7; the next have 6)."""
RESULT_SCREENSHOT = Path("/tmp/chat-results.png")
STREAMING = re.compile(r"\bstreaming\b")
VISITED = re.compile(r"\bvisited\b")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site_server(tmp_path_factory, eras_path) -> Iterator[LiveServer]:
    """A daphne server on a free port with a fresh database, graphs and a user; its eras
    database is the demo's with the customer that has the most projects renamed to XSS (a
    cell a table must show as text)."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    folder = tmp_path_factory.mktemp("live")
    eras = folder / "eras.sqlite3"
    shutil.copy(eras_path, eras)
    with sqlite3.connect(eras) as db:
        db.execute("UPDATE customers SET name = ? WHERE name = ?", (XSS, TOP_CUSTOMER))
    with live_daphne(folder, ERAS_DATABASE_URL=f"sqlite:///{eras}") as server:
        yield server


@pytest.fixture(scope="module")
def live_server_url(site_server) -> str:
    """The live server's base URL."""
    return site_server.url


@pytest.fixture(scope="module")
def browser(live_server_url):
    """Debian's Chromium, headless, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page, base: str, then: str = "/") -> None:
    """Through the site's sign-in form, as a person would."""
    page.goto(f"{base}/login/?next={then}")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)


def test_tests_page_shows_live_results_and_falls_back_to_polling(browser, site_server,
                                                                 live_server_url):
    """Runner events reach /tests over /ws/test; a socket that fails switches it to polling."""
    from playwright.sync_api import expect

    page = browser.new_page()
    sign_in(page, live_server_url, "/tests")
    expect(page.locator("#mode")).to_have_text("live socket")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    publish = """async (event) => {
        const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
        const r = await fetch('/api/test/status', {method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
          body: JSON.stringify(event)});
        return r.status;
    }"""
    for event in ({"type": "suite_start", "suite": "smoketest", "steps": 2},
                  {"type": "step_result", "suite": "smoketest", "step": 1,
                   "check": "reply contains Hello", "passed": True},
                  {"type": "step_result", "suite": "smoketest", "step": 2,
                   "check": "frames == 4", "passed": False, "detail": "got 5"},
                  {"type": "suite_end", "suite": "smoketest", "passed": 1, "total": 2}):
        assert page.evaluate(publish, event) == 202
    suite = page.locator(".suite")
    expect(suite.locator(".results li")).to_have_count(2)
    expect(suite.locator(".verdict")).to_have_text(["PASS", "FAIL"])
    expect(suite.locator(".score")).to_have_text("score 1/2")
    page.screenshot(path=str(SCREENSHOT.with_name("tests.png")))

    # A plain `runtests` in another process, with its own in-memory channel layer: the
    # socket still brings each check live (read from the database where it is stored).
    page = browser.new_page()
    sign_in(page, site_server.url, "/tests")
    expect(page.locator("#mode")).to_have_text("live socket")
    site_server.manage("runtests", "fast", "--fail-under", "0")
    fast = page.locator(".suite", has_text="fast")
    expect(fast.locator(".results li")).to_have_count(12, timeout=15_000)
    expect(fast.locator(".score")).to_have_text("score 12/12")
    expect(page.locator("#mode")).to_have_text("live socket")

    # A socket that cannot get through (as behind a proxy that breaks it): polling.
    page = browser.new_page()
    page.route_web_socket("**/ws/test", lambda ws: ws.close(code=1011))
    sign_in(page, live_server_url, "/tests")
    expect(page.locator("#mode")).to_contain_text("polling every 500 ms")
    # ...and shows the latest run check by check, from the database.
    expect(page.locator("#latest-run")).to_contain_text("12/12 passed")
    expect(page.locator(".suite", has_text="fast").locator(".results li")).to_have_count(12)


def test_chat_page_in_a_real_browser(browser, live_server_url):
    """Sign in, stream an answer, watch the HUD, click a counter, and never render model HTML."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1360, "height": 860})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    deltas: list[str] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: deltas.append(frame) if '"delta"' in str(frame) else None))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    # A Content-Security-Policy violation is reported as a console error.
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    # Signed out, the page sends us to the sign-in form and back.
    page.goto(live_server_url + "/")
    assert page.url == live_server_url + "/login/?next=/"
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server_url + "/")
    expect(page.locator("#signed-in-user")).to_have_text(USERNAME)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")

    # hello: a streamed answer, and the HUD's frames.
    page.fill("#message", "hello")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".body")).to_have_text("Hello! How can I help you today?")
    expect(answer).not_to_have_class(STREAMING)
    assert len(deltas) > 1, "the answer arrived in more than one delta"
    # Rate it: a thumb, then an optional comment; stored for this answer.
    answer.locator(".thumb.up").click()
    expect(answer.locator(".thumb.up")).to_have_attribute("aria-pressed", "true")
    answer.locator(".rating-note input").fill("friendly")
    answer.locator(".rating-note button").click()
    expect(answer.locator(".rating")).to_contain_text("thanks")
    history = page.evaluate("() => fetch('/api/history').then(r => r.json())")
    assert history["messages"][-1]["rating"] == "up"
    expect(page.locator("#frames-summary")).to_contain_text("2 frames")
    expect(page.locator("#frames tr")).to_have_count(4)  # input; output, memorizer, ui
    expect(page.locator("#frames")).to_contain_text("route=reflex")
    expect(page.locator('.picture:not([hidden]) g.node[data-node="output"]')).to_have_class(VISITED)
    expect(page.locator('.picture:not([hidden]) g.node[data-node="director"]')).not_to_have_class(
        VISITED)

    # A counter: the click moves it at once, before the server answers.
    page.fill("#message", "give me a counter")
    page.keyboard.press("Enter")
    counter = page.locator('.machine[data-machine="counter"]')
    expect(counter.locator(".machine-text")).to_have_text("Count: 0")
    expect(page.locator("#frames-summary")).to_contain_text("4 frames")
    # Step through its frames in the HUD: one frame's nodes lit at a time.
    page.click("#step-forward")
    expect(page.locator("#step-label")).to_have_text("frame 1 of 4")
    expect(page.locator('.picture:not([hidden]) g.node.active')).to_have_count(1)
    expect(page.locator('.picture:not([hidden]) g.node[data-node="input"]')).to_have_class(
        re.compile(r"\bactive\b"))
    page.click("#step-forward")
    expect(page.locator('.picture:not([hidden]) g.node[data-node="director"]')).to_have_class(
        re.compile(r"\bactive\b"))
    expect(page.locator('#frames tr.current')).to_have_count(1)
    page.click("#step-back")
    expect(page.locator("#step-label")).to_have_text("frame 1 of 4")
    # Replay that answer from its recording, then step through the replay in the HUD.
    page.locator(".msg.assistant").last.locator(".thumb.replay").click()
    expect(page.locator("#frames-summary")).to_have_text("replay · 4 frames")
    expect(page.locator("#step-label")).to_have_text("frame 1 of 4")
    page.click("#step-forward")
    expect(page.locator('.picture:not([hidden]) g.node[data-node="director"]')).to_have_class(
        re.compile(r"\bactive\b"))
    seq_before = page.evaluate("window.agentChat.lastSeq()")
    shown = page.evaluate("""() => {
        const card = document.querySelector('.machine[data-machine="counter"]');
        const plus = [...card.querySelectorAll('button')].find(b => b.textContent === '+1');
        plus.click();
        return card.isConnected ? card.querySelector('.machine-text').textContent
             : document.querySelector('.machine[data-machine="counter"] .machine-text').textContent;
    }""")
    assert shown == "Count: 1", "the click was applied locally, in the same tick"
    # The server's controls. Polled from here: wait_for_function evaluates its text with
    # eval, which the page's Content-Security-Policy (rightly) refuses.
    deadline = time.monotonic() + 10
    while page.evaluate("window.agentChat.lastSeq()") <= seq_before:
        assert time.monotonic() < deadline, "the server's controls never came"
        page.wait_for_timeout(50)
    expect(counter.locator(".machine-text")).to_have_text("Count: 1")

    # Model output that looks like HTML is shown as text and makes no element.
    page.fill("#message", f"remember that {XSS}")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".body")).to_have_text(f"Got it — I'll remember that {XSS}.")
    expect(page.locator("#memory")).to_contain_text(XSS)
    assert page.locator("img").count() == 0
    rendered = page.evaluate("""() => {
        const box = document.createElement('div');
        box.appendChild(window.AgentMarkdown.render(
          '**bold** *it* `<b>x</b>` [bad](javascript:alert(1)) [good](https://example.com)\\n' +
          '<script>alert(1)</script>\\n\\n- one\\n- two\\n\\n```\\n<img src=x>\\n```'));
        return {html: box.innerHTML, links: [...box.querySelectorAll('a')].map(
          a => [a.getAttribute('href'), a.rel]), tags: [...box.querySelectorAll('*')].map(
          e => e.tagName)};
    }""")
    assert rendered["links"] == [["https://example.com", "noopener noreferrer"]]
    assert set(rendered["tags"]) <= {"P", "STRONG", "EM", "CODE", "A", "BR", "UL", "LI", "PRE"}
    assert "<script>" not in rendered["html"] and "&lt;script&gt;" in rendered["html"]

    # A dropped socket reconnects and resumes: the next answer is shown exactly once.
    bubbles = page.locator(".msg.assistant").count()
    page.evaluate("window.agentChat.socket().close()")
    expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    page.fill("#message", "what is my name?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant")).to_have_count(bubbles + 1)
    expect(page.locator(".msg.assistant").last).not_to_have_class(STREAMING)

    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert dialogs == [], "no script from model output ran"
    assert failed == [] and console_errors == []

    # The admin's trace page (timeline, payloads) draws under the same policy.
    page.goto(live_server_url + "/admin/traces/messagetrace/")
    page.locator("#result_list tbody a").first.click()
    expect(page.locator(".tl-bar").first).to_be_visible()
    assert page.locator(".tl-bar").first.bounding_box()["width"] > 0
    assert console_errors == [], "no Content-Security-Policy violation"

    # Signing out lands on the sign-in page, which says so.
    page.goto(live_server_url + "/")
    page.click("#sign-out")
    page.wait_for_url(live_server_url + "/login/")
    expect(page.locator(".notice")).to_have_text("You have signed out.")
    assert console_errors == []


def test_a_data_answer_shows_its_table_chart_csv_and_query(browser, live_server_url):
    """A ranked list: a table of its rows and a bar chart (one bar a row), sortable, as CSV,
    a cell that looks like HTML shown as text, and still there after a reload; a single
    count: no chart, and "How I found this" shows its SQL and links staff to the trace."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    page.click("#clear-button")

    page.fill("#message", "which ten customers have the most projects?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_class(STREAMING)
    result = answer.locator(".result")
    expect(result).to_have_attribute("data-chart", "bar")
    expect(result.locator(".result-count")).to_have_text("10 rows")
    # The chart first (its shape calls for one): one bar per row, in SVG.
    expect(result.locator(".result-chart")).to_be_visible()
    expect(result.locator(".result-chart svg rect.mark")).to_have_count(10)
    expect(result.locator(".result-chart svg text.label").first).to_have_text(
        XSS[:21] + "…")  # a long label is cut; the table has it whole
    # The table: ten rows, the count right-aligned; the HTML-looking name is text.
    result.locator("button.view-table").click()
    table = result.locator(".result-table")
    expect(table).to_be_visible()
    expect(result.locator(".result-chart")).to_be_hidden()
    expect(table.locator("tbody tr")).to_have_count(10)
    expect(table.locator("thead th")).to_have_text(["name", "projects"])
    first = table.locator("tbody tr").first.locator("td")
    expect(first).to_have_text([XSS, "7"])
    expect(first.nth(1)).to_have_class(re.compile(r"\bnum\b"))
    assert answer.locator("img").count() == 0 and dialogs == []
    # Sorting: by projects ascending (the fewest first), again for descending, by name.
    table.locator("thead button", has_text="projects").click()
    expect(table.locator("thead th").nth(1)).to_have_attribute("aria-sort", "ascending")
    expect(table.locator("tbody tr").first.locator("td").nth(1)).to_have_text("5")
    table.locator("thead button", has_text="projects").click()
    expect(table.locator("tbody tr").first.locator("td").nth(1)).to_have_text("7")
    table.locator("thead button", has_text="name").click()
    names = table.locator("tbody td:first-child").all_text_contents()
    assert names[0] == XSS and names[1:] == sorted(names[1:], key=str.casefold), names
    # The CSV: the header and the ten rows the event carries, in the query's order.
    with page.expect_download() as download:
        result.locator("button.csv").click()
    csv = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert csv[0] == "name,projects" and len(csv) == 11
    assert csv[1] == f"{XSS},7"
    page.screenshot(path=str(RESULT_SCREENSHOT))

    # A longer, capped result (drawn by the page's own code): the first 10 rows, "Show all"
    # expands, a line for a month column, the CSV's first line says it was capped, and the
    # numbers are written as the answers write them.
    drawn = page.evaluate("""() => {
        const rows = Array.from({length: 15}, (_, i) =>
          ['2024-' + String(i % 12 + 1).padStart(2, '0'), 12345.678 + i]);
        const event = {message_id: 'm', sql: 'SELECT 1', rows: rows, row_count: 200,
          capped: true, cut: 'rows', shortened: false, ms: 1, pid: '', check: '',
          columns: [{name: 'month', type: 'date'}, {name: 'total', type: 'number'}],
          chart: {kind: 'line', x: 'month', y: ['total']}};
        const box = window.AgentResults.render(event, {});
        document.body.appendChild(box);
        const before = box.querySelectorAll('.result-table tbody tr').length;
        box.querySelector('button.show-all').click();
        return {before: before, after: box.querySelectorAll('.result-table tbody tr').length,
                line: box.querySelectorAll('.result-chart polyline').length,
                count: box.querySelector('.result-count').textContent,
                cell: box.querySelector('.result-table tbody td.num').textContent,
                csv: window.AgentResults.csv(event).split('\\r\\n').slice(0, 3)};
    }""")
    assert drawn["before"] == 10 and drawn["after"] == 15 and drawn["line"] == 1
    assert drawn["count"] == "more than 200 rows (the first 15 shown)"
    assert drawn["cell"] == "12,345.68"
    assert drawn["csv"] == ["# the query had more than 200 rows; this file holds the first 15",
                            "month,total", "2024-01,12345.678"]

    # A reload draws the answer again with its result, from the stored events.
    page.reload()
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    again = page.locator(".msg.assistant").last.locator(".result")
    expect(again.locator(".result-table tbody tr")).to_have_count(10)
    expect(again.locator(".result-chart svg rect.mark")).to_have_count(10)

    # A single count: the figure is the answer, so no chart; the query is one click away.
    page.fill("#message", "how many customers are there?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".body")).to_have_text("There are 120 customers.")
    result = answer.locator(".result")
    expect(result).to_have_attribute("data-chart", "none")
    expect(result.locator(".result-chart")).to_have_count(0)
    expect(result.locator(".found pre.sql")).to_be_hidden()
    result.locator(".found summary").click()
    expect(result.locator(".found pre.sql")).to_have_text(re.compile(r"^SELECT COUNT\(\*\)"))
    expect(result.locator(".found .check")).to_contain_text("grounded")
    result.locator(".found a.trace-link").click()
    page.wait_for_url(re.compile(r"/admin/traces/messagetrace/\d+/change/$"))
    expect(page.locator(".query-result pre.query-sql")).to_contain_text("SELECT COUNT(*)")
    assert console_errors == [], "no Content-Security-Policy violation"
    assert dialogs == []


@pytest.fixture(scope="module")
def slow_server_url(tmp_path_factory, eras_path) -> Iterator[str]:
    """A live daphne whose builtin model takes 700 ms per call, to look at a message mid-answer."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with live_daphne(tmp_path_factory.mktemp("slow"), BUILTIN_LLM_LATENCY_MS="700",
                     ERAS_DATABASE_URL=f"sqlite:///{eras_path}") as server:
        yield server.url


def test_a_second_tab_and_a_reload_mid_answer_show_the_question(browser, slow_server_url):
    """'thinking…' until the first word; another tab shows the question and its answer; a
    page reloaded mid-answer shows the question and the whole answer, once."""
    from playwright.sync_api import expect

    context = browser.new_context()
    mine = context.new_page()
    sign_in(mine, slow_server_url)
    theirs = context.new_page()
    theirs.goto(slow_server_url + "/")
    for page in (mine, theirs):
        expect(page.locator("#status")).to_have_attribute("data-state", "connected")

    mine.fill("#message", "hello")
    mine.keyboard.press("Enter")
    waiting = mine.locator(".msg.assistant.streaming .body:empty")
    expect(waiting).to_have_count(1)  # accepted, no word yet
    assert "thinking" in mine.evaluate(
        "getComputedStyle(document.querySelector('.msg.assistant.streaming .body'), "
        "'::after').content")
    expect(theirs.locator(".msg.user")).to_have_text(["hello"])
    for page in (mine, theirs):
        expect(page.locator(".msg.assistant .body")).to_have_text(
            ["Hello! How can I help you today?"])
    expect(mine.locator(".msg.user")).to_have_count(1)  # its own question, shown once

    mine.fill("#message", "what is my name?")
    mine.keyboard.press("Enter")
    expect(theirs.locator(".msg.user")).to_have_count(2)
    theirs.reload()  # mid-answer: the history has neither this question nor its answer yet
    expect(theirs.locator(".msg.user")).to_have_text(["hello", "what is my name?"])
    expect(theirs.locator(".msg.assistant")).to_have_count(2)
    for page in (mine, theirs):
        expect(page.locator(".msg.assistant").last).not_to_have_class(STREAMING)
    answer = mine.locator(".msg.assistant .body").last.text_content()
    assert answer and "name" in answer
    expect(theirs.locator(".msg.assistant .body").last).to_have_text(answer)
    context.close()


def save_graph_config(page, *, double_texting: str, approval: str = "") -> None:
    """On the graph list of the admin: open v3-framed, set its config's double_texting
    (and approval rules, as JSON), save, and see it saved."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="v3-framed", exact=True).click()
    page.select_option("#id_double_texting", double_texting)
    page.fill("#id_approval", approval)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_have_count(1)


def test_a_builder_sets_enqueue_and_a_double_text_is_queued_then_answered(browser,
                                                                           slow_server_url):
    """On the graph's admin page a builder sets double_texting to enqueue; on the chat page
    a second message sent while the first is answered is said to be queued, each question
    is shown once, and both are answered in order. (Last in this file: it changes the slow
    server's graph.)"""
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    sign_in(page, slow_server_url, then="/admin/graphs/graph/")
    save_graph_config(page, double_texting="enqueue")

    page.goto(slow_server_url + "/")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    before = page.locator(".msg.assistant").count()  # the history of the test before
    page.fill("#message", "my name is Ada")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant.streaming")).to_have_count(1)  # the first runs
    page.fill("#message", "what is my name?")
    page.keyboard.press("Enter")
    expect(page.locator(".system.queued")).to_have_text(
        ["Queued: answered after the current message (next)."])
    expect(page.locator(".msg.assistant")).to_have_count(before + 2, timeout=30_000)
    expect(page.locator(".msg.assistant").last).not_to_have_class(STREAMING, timeout=30_000)
    users = page.locator(".msg.user")
    expect(users).to_have_count(before + 2)  # each question shown once
    assert users.all_text_contents()[-2:] == ["my name is Ada", "what is my name?"]
    expect(page.locator(".msg.assistant .body").last).to_have_text("Your name is Ada.")
    context.close()


def test_a_builder_sets_rollback_and_a_double_text_takes_the_first_back(browser,
                                                                        slow_server_url):
    """With double_texting `rollback` on the graph, a second message sent while the first
    is answered takes it back: the page says so, the first question and its answer leave
    the chat, the second is answered; a reload shows the same history. (After the enqueue
    test: it changes the slow server's graph again.)"""
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    sign_in(page, slow_server_url, then="/admin/graphs/graph/")
    save_graph_config(page, double_texting="rollback")

    page.goto(slow_server_url + "/")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    users_before = page.locator(".msg.user").all_text_contents()
    answers_before = page.locator(".msg.assistant").count()
    page.fill("#message", "how many customers are there?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant.streaming")).to_have_count(1)  # the first runs
    page.fill("#message", "hello")
    page.keyboard.press("Enter")
    expect(page.locator(".system.queued").last).to_have_text(
        "The previous message was taken back.", timeout=30_000)
    expect(page.locator(".msg.assistant").last).not_to_have_class(STREAMING, timeout=30_000)
    expect(page.locator(".msg.assistant .body").last).to_contain_text(
        "How can I help you today?")
    expect(page.locator(".msg.user")).to_have_text([*users_before, "hello"])
    expect(page.locator(".msg.assistant")).to_have_count(answers_before + 1)
    assert page.get_by_text("Taking back the current message").count() == 1
    page.reload()
    expect(page.locator(".msg.user")).to_have_text([*users_before, "hello"])
    context.close()


def test_a_builder_asks_for_approval_and_the_chat_page_approves(browser, slow_server_url):
    """With approval rules on the graph (its admin page), the chat page shows the query that
    waits with Approve and Deny; approving runs it and the answer comes; the card says
    Approved. (Last: it changes the slow server's graph.)"""
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    sign_in(page, slow_server_url, then="/admin/graphs/graph/")
    save_graph_config(page, double_texting="", approval='{"tools": ["query_db"]}')

    page.goto(slow_server_url + "/")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    page.fill("#message", "how many customers are there?")
    page.keyboard.press("Enter")
    card = page.locator(".approval").last
    expect(card.locator(".approval-step")).to_have_text(
        "query: SELECT COUNT(*) AS count FROM customers", timeout=30_000)
    expect(card.locator(".approval-title")).to_have_text("Waiting for your approval")
    card.get_by_role("button", name="Approve").click()
    expect(card.locator(".approval-title")).to_have_text("Approved")
    expect(page.locator(".msg.assistant").last).not_to_have_class(STREAMING, timeout=30_000)
    expect(page.locator(".msg.assistant .body").last).to_have_text("There are 120 customers.")
    context.close()
