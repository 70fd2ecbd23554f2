/* The tests page: live suite progress from /ws/test, with a polling fallback.
 *
 * The socket is preferred: it brings each check whichever process runs the suites
 * (through the channel layer, or read from the database by the socket's server). A
 * proxy that buffers WebSocket frames shows up as a socket that is open but silent
 * while the run advances: a slow status check (every 3 s) notices the run moved
 * without a socket event and the page then polls GET /api/test/status every
 * 500 ms, which carries each check from the database. A socket that cannot open at
 * all also switches to polling. The active mode is shown on the page.
 */
(function () {
  "use strict";

  var POLL_MS = 500;
  var WATCH_MS = 3000;
  var mode = "socket";
  var socket = null;
  var lastSocketEvent = 0;
  var lastFingerprint = null;
  var pollTimer = null;
  var watchTimer = null;
  var suites = {};      // suite name -> {root, list, score}
  var seenPolled = 0;   // events already applied from a polled `events` list
  var polledRun = null; // the run those events belong to

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(kind, text) {
    $("status").setAttribute("data-state", kind);
    $("status").querySelector(".status-text").textContent = text;
  }

  function setMode(next, why) {
    mode = next;
    $("mode").textContent = next === "socket" ? "live socket" : "polling every 500 ms" +
      (why ? " (" + why + ")" : "");
    if (next === "polling") {
      setStatus("polling", "polling");
      if (!pollTimer) pollTimer = setInterval(poll, POLL_MS);
    } else {
      setStatus("connected", "live");
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    }
  }

  // --- rendering -------------------------------------------------------------------

  function suiteName(event) {
    return String(event.suite || event.name || "suite");
  }

  function suiteFor(name) {
    if (suites[name]) return suites[name];
    var waiting = $("waiting");
    if (waiting) waiting.remove();
    var root = el("section", "panel suite");
    var head = el("h2");
    head.appendChild(el("span", "", name));
    var score = el("span", "score muted", "running…");
    head.appendChild(score);
    root.appendChild(head);
    var list = el("ul", "results");
    root.appendChild(list);
    $("suites").insertBefore(root, $("suites").firstChild);
    suites[name] = { root: root, list: list, score: score, keys: {} };
    return suites[name];
  }

  function passed(event) {
    if (typeof event.passed === "boolean") return event.passed;
    if (typeof event.ok === "boolean") return event.ok;
    var status = String(event.status || event.result || "").toLowerCase();
    return status === "pass" || status === "passed" || status === "ok";
  }

  function onSuiteStart(event) {
    var suite = suiteFor(suiteName(event));
    suite.list.textContent = "";
    suite.keys = {};
    suite.score.className = "score muted";
    var steps = event.steps || event.total;
    suite.score.textContent = "running…" + (steps ? " (" + steps + " steps)" : "");
  }

  function onStepResult(event) {
    var suite = suiteFor(suiteName(event));
    var step = event.step !== undefined ? event.step : "";
    var check = event.check || event.name || event.description || "";
    // A check's place in its suite, where known: the socket and the database word steps
    // differently but number checks alike.
    var key = event.index !== undefined ? "#" + (event.round || 1) + "." + event.index
      : step + "|" + check;
    if (suite.keys[key]) return;  // the socket and a poll may both report a result
    suite.keys[key] = true;
    var ok = passed(event);
    var item = el("li", ok ? "pass" : "fail");
    item.appendChild(el("span", "verdict " + (ok ? "pass" : "fail"), ok ? "PASS" : "FAIL"));
    var label = (step !== "" ? "step " + step + ": " : "") + check;
    item.appendChild(el("span", "what", label));
    var detail = event.detail || event.message || event.reason || "";
    if (detail) item.appendChild(el("span", "detail", detail));
    suite.list.appendChild(item);
  }

  function onSuiteEnd(event) {
    var suite = suiteFor(suiteName(event));
    var total = event.total;
    var good = event.passed;
    var score = event.score || (typeof good === "number" && typeof total === "number"
      ? good + "/" + total : "");
    suite.score.textContent = score ? "score " + score : "finished";
    var allGood = typeof good === "number" && typeof total === "number" ? good === total
      : /^(\d+)\/\1$/.test(String(score));
    suite.score.className = "score " + (allGood ? "good" : "bad");
  }

  var handlers = { suite_start: onSuiteStart, step_result: onStepResult, suite_end: onSuiteEnd };

  function apply(event) {
    var handler = event && handlers[event.type];
    if (handler) handler(event);
  }

  // --- socket ------------------------------------------------------------------------

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/test");
    socket.onopen = function () { setMode("socket"); };
    socket.onmessage = function (message) {
      lastSocketEvent = Date.now();
      if (mode !== "socket") setMode("socket");
      try { apply(JSON.parse(message.data)); } catch (e) { /* not JSON: nothing to show */ }
    };
    socket.onclose = function (close) {
      socket = null;
      if (close.code === 4401 || close.code === 4403) {
        setStatus("offline", "not allowed");
        setMode("polling", "the socket was refused");
        return;
      }
      setMode("polling", "the socket is closed");
      setTimeout(connect, 5000);
    };
  }

  // --- polling ------------------------------------------------------------------------

  function fetchStatus() {
    return fetch("/api/test/status", { credentials: "same-origin",
                                       headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; });
  }

  /** Apply a status document whatever its exact shape: a list of events, or suites of results. */
  function applyStatus(status) {
    if (!status || typeof status !== "object") return;
    if (Array.isArray(status.events)) {
      status.events.slice(seenPolled).forEach(apply);
      seenPolled = status.events.length;
      return;
    }
    if (status.run !== undefined) {
      showRun(status.run);
      var events = status.run && Array.isArray(status.run.events) ? status.run.events : [];
      if (status.run && status.run.id !== polledRun) {
        polledRun = status.run.id;
        seenPolled = 0;
      }
      events.slice(seenPolled).forEach(apply);
      seenPolled = events.length;
      return;
    }
    var runs = Array.isArray(status.suites) ? status.suites : [status];
    runs.forEach(function (run) {
      var name = suiteName(run);
      if (!run.suite && !run.name && !run.results) return;
      suiteFor(name);
      (run.results || run.checks || run.steps || []).forEach(function (r) {
        apply(Object.assign({ type: "step_result", suite: name }, r));
      });
      if (run.finished || run.done || run.status === "finished" || run.score) {
        apply(Object.assign({ type: "suite_end", suite: name }, run));
      }
    });
  }

  /** The latest run as /api/test/status reports it: counts and score, not each check. */
  function showRun(run) {
    var box = $("latest-run");
    if (!run) { box.textContent = "No test run yet."; return; }
    box.textContent = "";
    var what = "Run " + run.id + (run.graph ? " on " + run.graph : "") + ": " + run.status;
    box.appendChild(el("span", "", what + " · "));
    var total = Number(run.total || 0);
    var good = Number(run.passed || 0);
    var score = el("strong", "score " + (run.status === "running" ? "muted" : good === total ? "good" : "bad"),
                   good + "/" + total + " passed" + (run.failed ? ", " + run.failed + " failed" : ""));
    box.appendChild(score);
    if (run.started_at) box.appendChild(el("span", "muted", " · started " + run.started_at));
  }

  function poll() {
    fetchStatus().then(applyStatus);
  }

  /** While on the socket, notice a run that moves without the socket saying so. */
  function watch() {
    if (mode !== "socket") return;
    fetchStatus().then(function (status) {
      if (!status) return;
      var fingerprint = JSON.stringify(status);
      var moved = lastFingerprint !== null && fingerprint !== lastFingerprint;
      lastFingerprint = fingerprint;
      if (moved && Date.now() - lastSocketEvent > WATCH_MS) {
        setMode("polling", "the socket is silent while the run advances (a proxy holding " +
                "its frames?): following the run from the database");
        applyStatus(status);
      }
    });
  }

  setMode("socket");
  setStatus("connecting", "connecting…");
  fetchStatus().then(function (status) {
    lastFingerprint = status ? JSON.stringify(status) : null;
    applyStatus(status);
  });
  connect();
  watchTimer = setInterval(watch, WATCH_MS);
  window.agentTests = { mode: function () { return mode; }, watchTimer: watchTimer };
})();
