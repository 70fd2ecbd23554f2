/* The chat page: one socket to /ws, a transcript, widgets and the HUD.
 *
 * Every event the server sends on /ws carries `seq`. The page remembers the
 * last one it applied; after a dropped socket it reconnects (0.5 s doubling to
 * 8 s), asks `resume` from there and ignores anything it has already seen, so
 * a reconnect never loses or repeats a word. Nothing here assigns innerHTML:
 * text goes in as text nodes, answers through AgentMarkdown (markdown.js).
 */
(function () {
  "use strict";

  var boot = JSON.parse(document.getElementById("boot").textContent);
  var md = window.AgentMarkdown;
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 8000;
  var HUD_LOG_LIMIT = 40;
  var MEMORY_FIELDS = ["user_name", "user_mood", "topic", "topic_history", "language",
                       "style_hint", "facts", "situation"];
  var KNOWN_GRAPHS = ["v3-framed", "v4-eras"];
  var ZERO_ID = "00000000-0000-0000-0000-000000000000";  // in boot.trace_url: a message's id

  var state = {
    lastSeq: boot.last_seq || 0,
    graph: boot.graph,
    machines: boot.machines || {},
    controls: boot.controls || [],
    memory: boot.memory || {},
    heldMemory: {},       // message_id -> memory updates shown once its answer is stored
    socket: null,
    backoff: BACKOFF_MIN_MS,
    reconnectTimer: null,
    stopped: false,
    answers: {},          // message_id -> {bubble, body, text, meta}
    hudMessage: null,     // the message whose frames the HUD shows
    hudFrame: 0,
    pendingClick: null,   // {machine, before}: undo an optimistic click the server refuses
    sent: [],             // {text, bubble} this tab sent and already shows, until accepted
    questions: {},        // message id -> its question's bubble (a rollback removes it)
    answering: {},        // message_id -> true from its `accepted` to its `done`
    lastTrace: null,      // the last message's frame_trace, for stepping through its frames
    step: 0,              // the frame shown alone (0: all of them)
  };

  // --- small DOM helpers ------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function scrollToEnd() {
    var t = $("transcript");
    t.scrollTop = t.scrollHeight;
  }

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** A JSON request to the REST API; resolves to {ok, status, data}; never throws. */
  function api(method, url, body) {
    var options = { method: method, credentials: "same-origin",
                    headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = cookie("csrftoken");
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { ok: response.ok, status: response.status, data: data };
      });
    }).catch(function () { return { ok: false, status: 0, data: null }; });
  }

  function apiError(result, what) {
    if (result.status === 404 || result.status === 405) {
      return what + " needs the REST API, which this server does not offer yet";
    }
    if (result.status === 0) return what + " failed: the server cannot be reached";
    var detail = result.data && (result.data.error || result.data.message || result.data.detail);
    if (detail && typeof detail === "object") detail = detail.message || JSON.stringify(detail);
    return what + " failed (" + result.status + (detail ? ": " + detail : "") + ")";
  }

  // --- connection ---------------------------------------------------------------

  function setStatus(kind, text) {
    var status = $("status");
    status.setAttribute("data-state", kind);
    status.querySelector(".status-text").textContent = text;
  }

  function connect() {
    if (state.stopped) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // after_seq: the socket sends what we missed before any live event (so, no resume).
    var socket = new WebSocket(scheme + location.host + "/ws?chat=" + encodeURIComponent(boot.chat)
                               + "&after_seq=" + state.lastSeq);
    state.socket = socket;
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      receive(event);
    };
    socket.onclose = function (close) {
      if (state.socket !== socket) return;
      state.socket = null;
      if (close.code === 4401 || close.code === 4403) {
        state.stopped = true;
        setStatus("offline", close.code === 4401 ? "signed out" : "not allowed");
        systemLine(close.code === 4401
          ? "Your session has ended. Sign in again to keep chatting."
          : "This account may not use the chat.", "error", close.code === 4401);
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (state.stopped || state.reconnectTimer) return;
    var wait = state.backoff;
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    setStatus("reconnecting", "reconnecting in " + (wait / 1000) + " s…");
    state.reconnectTimer = setTimeout(function () {
      state.reconnectTimer = null;
      setStatus("reconnecting", "reconnecting…");
      connect();
    }, wait);
  }

  function send(payload) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      systemLine("Not connected right now; the page is reconnecting. Try again in a moment.",
                 "error");
      return false;
    }
    state.socket.send(JSON.stringify(payload));
    return true;
  }

  // --- events -------------------------------------------------------------------

  var handlers = {
    ready: onReady, accepted: onAccepted, delta: onDelta, progress: onProgress, hud: onHud,
    controls: onControls, frame_trace: onFrameTrace, done: onDone, cleared: onCleared,
    graph: onGraph, error: onError, queued: onQueued, approval: onApproval,
    approval_decided: onApprovalDecided, result: onResult,
  };

  var DECIDED = { approve: "Approved", deny: "Denied", timeout: "Not approved in time" };

  /** The message waits for a person's approval of a tool call: show it in the answer, with
   *  Approve and Deny (any tab of the conversation may decide; every tab hears it). */
  function onApproval(event) {
    var answer = answerFor(event.message_id);
    var card = el("div", "approval");
    card.setAttribute("data-approval", event.id);
    card.appendChild(el("div", "approval-title", "Waiting for your approval"));
    card.appendChild(el("code", "approval-step", event.step));
    card.appendChild(el("div", "approval-reason", event.reason));
    var actions = el("div", "approval-actions");
    [["approve", "Approve"], ["deny", "Deny"]].forEach(function (choice) {
      var button = el("button", "approval-" + choice[0], choice[1]);
      button.type = "button";
      button.addEventListener("click", function () {
        if (!send({ type: "approval", id: event.id, decision: choice[0] })) return;
        actions.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      });
      actions.appendChild(button);
    });
    card.appendChild(actions);
    answer.bubble.insertBefore(card, answer.body);
    scrollToEnd();
  }

  function onApprovalDecided(event) {
    var card = document.querySelector('[data-approval="' + cssEscape(event.id) + '"]');
    if (!card) return;
    card.classList.add("decided", event.decision);
    card.querySelector(".approval-title").textContent = DECIDED[event.decision] || event.decision;
    var actions = card.querySelector(".approval-actions");
    if (actions) actions.remove();
  }

  /** The message this tab sent came while another was answered and waits its turn (or,
   *  with `interrupt` or `rollback`, stops that one and is answered next). */
  function onQueued(event) {
    var place = event.position === 1 ? "next" : "number " + event.position + " in line";
    var said = {
      interrupt: "Interrupting the current message: yours is answered next.",
      rollback: "Taking back the current message: yours is answered instead.",
    }[event.double_texting];
    systemLine(said || "Queued: answered after the current message (" + place + ").",
               "queued");
  }

  /** Another tab (or an API client) switched the conversation's graph. */
  function onGraph(event) {
    if (event.graph && event.graph !== state.graph) showGraph(event.graph);
  }

  function receive(event) {
    if (typeof event.seq === "number") {
      // A resumed or fanned-out copy of something already applied: skip it.
      if (event.seq <= state.lastSeq) return;
      state.lastSeq = event.seq;
    }
    var handler = handlers[event.type];
    if (handler) handler(event);
  }

  function onReady(event) {
    state.backoff = BACKOFF_MIN_MS;
    setStatus("connected", "connected");
    if (typeof event.last_seq === "number" && event.last_seq < state.lastSeq && !event.busy) {
      // The server's idle log is shorter than what we saw (a reset database): follow it.
      // While a message is answered its events reach us before the log: keep ours.
      state.lastSeq = event.last_seq;
    }
    if (event.graph && event.graph !== state.graph) showGraph(event.graph);
    // What we missed comes unasked: the socket was opened with our after_seq.
  }

  function onAccepted(event) {
    // The question: this tab shows its own already; one sent from another tab, or
    // before this page was drawn (a reload mid-answer), is shown now.
    var mine = -1;
    state.sent.forEach(function (sent, n) {
      if (mine === -1 && sent.text === event.text) mine = n;
    });
    state.questions[event.message_id] =
      mine !== -1 ? state.sent.splice(mine, 1)[0].bubble : userLine(event.text);
    answerFor(event.message_id);  // an empty answer says "thinking" until its first word
    state.answering[event.message_id] = true;
    setBusy(true);
    scrollToEnd();
  }

  function answerFor(messageId) {
    var answer = state.answers[messageId];
    if (answer) return answer;
    hideEmptyHint();
    var bubble = el("article", "msg assistant streaming");
    var body = el("div", "body");
    var meta = el("div", "meta");
    var steps = el("ul", "steps");
    var results = el("div", "answer-results");
    bubble.appendChild(steps);
    bubble.appendChild(body);
    bubble.appendChild(results);
    bubble.appendChild(meta);
    $("transcript").appendChild(bubble);
    answer = { bubble: bubble, body: body, meta: meta, steps: steps, results: results,
               text: "", lines: {} };
    state.answers[messageId] = answer;
    return answer;
  }

  function onDelta(event) {
    var answer = answerFor(event.message_id);
    answer.text += event.text;
    md.renderInto(answer.body, answer.text);
    scrollToEnd();
  }

  /** A query the answer was read from: its table, chart and "How I found this". */
  function onResult(event) {
    var answer = answerFor(event.message_id);
    showResult(answer.results, event);
    scrollToEnd();
  }

  function showResult(box, event) {
    box.appendChild(window.AgentResults.render(event, {
      index: box.children.length + 1,
      traceUrl: boot.trace_url ? boot.trace_url.replace(ZERO_ID, event.message_id) : "",
    }));
  }

  function onProgress(event) {
    var answer = answerFor(event.message_id);
    var key = event.pid ? "pid:" + event.pid : event.kind === "tool" ? "tool:" + event.step
      : "thinking:" + event.node;
    var line = answer.lines[key];
    if (!line) {
      line = el("li", "step");
      answer.lines[key] = line;
      answer.steps.appendChild(line);
    }
    clear(line);
    line.className = "step " + event.kind + (event.status ? " " + event.status : "");
    var label = event.kind === "tool" && event.total
      ? "tool " + event.step + "/" + event.total : event.kind;
    line.appendChild(el("span", "kind", label));
    line.appendChild(el("span", "text", event.text));
    if (event.kind === "process") {
      if (event.status) line.appendChild(el("span", "badge", event.status));
      if (event.pid && (!event.status || event.status === "running")) {
        var cancel = el("button", "small danger", "Cancel");
        cancel.type = "button";
        cancel.addEventListener("click", function () {
          cancel.disabled = true;
          send({ type: "cancel_process", pid: event.pid });
        });
        line.appendChild(cancel);
      }
    }
    scrollToEnd();
  }

  // --- rating an answer -------------------------------------------------------------

  /** Thumbs up / down under an answer, and a comment box once one is chosen. */
  function ratingFor(bubble, messageId, current) {
    var box = el("div", "rating");
    var up = el("button", "thumb up", "👍");
    var down = el("button", "thumb down", "👎");
    up.type = down.type = "button";
    up.title = "A good answer";
    down.title = "A bad answer";
    var note = el("form", "rating-note");
    note.hidden = true;
    var input = el("input");
    input.type = "text";
    input.maxLength = 2000;
    input.placeholder = "What was good or wrong? (optional)";
    var save = el("button", "small", "Send");
    save.type = "submit";
    note.appendChild(input);
    note.appendChild(save);
    var chosen = current === 1 ? "up" : current === -1 ? "down" : "";

    function show() {
      up.classList.toggle("chosen", chosen === "up");
      down.classList.toggle("chosen", chosen === "down");
      up.setAttribute("aria-pressed", String(chosen === "up"));
      down.setAttribute("aria-pressed", String(chosen === "down"));
    }

    function rate(value, comment) {
      api("POST", "/api/rate", { id: messageId, rating: value, comment: comment || "" })
        .then(function (result) {
          if (!result.ok) { systemLine(apiError(result, "Rating the answer"), "error"); return; }
          chosen = value;
          show();
          if (comment) { note.hidden = true; box.appendChild(el("span", "muted", "thanks")); }
          else { note.hidden = false; }
        });
    }

    var replay = el("button", "thumb replay", "⟲ replay");
    replay.type = "button";
    replay.title = "Run this answer again from its recording (no model call) and step " +
      "through its frames in the HUD";
    replay.addEventListener("click", function () { replayInHud(messageId, replay); });

    up.addEventListener("click", function () { rate("up"); });
    down.addEventListener("click", function () { rate("down"); });
    note.addEventListener("submit", function (e) {
      e.preventDefault();
      if (chosen && input.value.trim()) rate(chosen, input.value.trim());
    });
    box.appendChild(up);
    box.appendChild(down);
    box.appendChild(replay);
    box.appendChild(note);
    show();
    bubble.appendChild(box);
  }

  /** Replay an answer from its recording and show the replay in the HUD, frame 1 lit:
   * ◀ ▶ then step through it. */
  function replayInHud(messageId, button) {
    button.disabled = true;
    api("GET", "/api/trace?id=" + encodeURIComponent(messageId)).then(function (found) {
      if (!found.ok) throw found;
      return api("POST", "/api/traces/" + found.data.id + "/replay", {});
    }).then(function (replayed) {
      if (!replayed.ok) throw replayed;
      return api("GET", "/api/trace?id=" + encodeURIComponent(replayed.data.message_id));
    }).then(function (trace) {
      if (!trace.ok) throw trace;
      onFrameTrace(trace.data);
      $("frames-summary").textContent = "replay · " + trace.data.total_frames + " frames";
      showStep(1);
    }).catch(function (result) {
      systemLine(apiError(result || {}, "Replaying the answer"), "error");
    }).then(function () { button.disabled = false; });
  }

  function onDone(event) {
    delete state.answering[event.message_id];
    var held = state.heldMemory[event.message_id] || [];
    delete state.heldMemory[event.message_id];
    if (event.stopped === "rollback") return takeBack(event.message_id);
    if (!event.failed) held.forEach(applyMemory);
    var answer = answerFor(event.message_id);
    answer.text = event.answer;
    md.renderInto(answer.body, event.answer);
    answer.bubble.classList.remove("streaming");
    if (event.failed) answer.bubble.classList.add("failed");
    answer.meta.textContent = [event.path, event.frames + " frames",
                               Math.round(event.ms) + " ms"].join(" · ");
    if (!answer.rated) {
      answer.rated = true;
      ratingFor(answer.bubble, event.message_id, 0);
    }
    // Processes still shown as running were finished by the answer.
    Array.prototype.forEach.call(answer.steps.querySelectorAll("button"), function (b) {
      b.remove();
    });
    setBusy(false);
    scrollToEnd();
  }

  /** A newer message took this one back (`rollback`): it leaves the chat, as it left the
   *  history and the memory. */
  function takeBack(messageId) {
    [state.questions[messageId], answerFor(messageId).bubble].forEach(function (bubble) {
      if (bubble) bubble.remove();
    });
    delete state.questions[messageId];
    delete state.answers[messageId];
    systemLine("The previous message was taken back.", "queued");
    setBusy(false);
  }

  function onControls(event) {
    state.pendingClick = null;  // the server's word replaces any optimistic guess
    state.machines = event.machines || {};
    state.controls = event.controls || [];
    renderControls();
  }

  function onCleared() {
    clear($("transcript"));
    var hint = boot.emptyHint;
    if (hint) { hint.hidden = false; $("transcript").appendChild(hint); }
    state.answers = {};
    state.questions = {};
    state.answering = {};
    state.machines = {};
    state.controls = [];
    renderControls();
    resetHud(null);
    var situation = state.memory.situation;
    state.memory = { situation: situation };
    renderMemory();
    loadState();
  }

  function onError(event) {
    if (state.pendingClick && event.code === "not_found") {
      state.machines = state.pendingClick.before;
      state.pendingClick = null;
      renderControls();
    }
    var refusals = ["busy", "bad_request", "timeout", "unavailable", "budget_exceeded"];
    if (refusals.indexOf(event.code) !== -1) {
      // Refused as busy, another message still runs: its `done` ends the busy look (so
      // does a message running when this one met its sender's quotas).
      var running = Object.keys(state.answering).length > 0;
      if (event.code !== "busy" && !(event.code === "budget_exceeded" && running)) {
        setBusy(false);
      }
      // A refusal of this tab's own send (no seq): no `accepted` will come for it.
      if (typeof event.seq !== "number") {
        var refused = state.sent.pop();
        if (refused && refused.bubble) refused.bubble.classList.add("refused");
      }
    }
    systemLine(event.message || event.code, "error");
  }

  // --- the HUD --------------------------------------------------------------------

  function pictureFor(graph) {
    return document.querySelector('.picture[data-graph="' + cssEscape(graph) + '"]');
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : String(text).replace(/["\\]/g, "\\$&");
  }

  function showGraph(graph) {
    state.graph = graph;
    var select = $("graph-select");
    if (!Array.prototype.some.call(select.options, function (o) { return o.value === graph; })) {
      select.appendChild(new Option(graph, graph));
    }
    select.value = graph;
    var found = false;
    Array.prototype.forEach.call(document.querySelectorAll(".picture"), function (p) {
      p.hidden = p.getAttribute("data-graph") !== graph;
      found = found || !p.hidden;
    });
    var missing = $("picture-missing");
    if (!found && !missing) {
      missing = el("p", "muted", "");
      missing.id = "picture-missing";
      $("pictures").appendChild(missing);
    }
    if (missing) {
      missing.hidden = found;
      missing.textContent = "No picture of " + graph + " on this page; reload to draw it.";
    }
    resetHud(null);
  }

  function resetHud(messageId) {
    state.hudMessage = messageId;
    state.hudFrame = 0;
    Array.prototype.forEach.call(document.querySelectorAll(".picture g.node"), function (g) {
      g.classList.remove("active", "visited", "failed");
    });
    var rows = $("frames");
    clear(rows);
    var placeholder = el("tr", "placeholder");
    var cell = el("td", "", messageId ? "Running…" : "Frames appear here as a message runs.");
    cell.colSpan = 4;
    placeholder.appendChild(cell);
    rows.appendChild(placeholder);
    clear($("hud-log"));
    $("frames-summary").textContent = "";
    $("hud-path").textContent = "";
  }

  function nodeInPicture(node) {
    var picture = pictureFor(state.graph);
    return picture && picture.querySelector('g.node[data-node="' + cssEscape(node) + '"]');
  }

  function onHud(event) {
    if (event.message_id !== state.hudMessage) resetHud(event.message_id);
    if (event.frame > state.hudFrame) {
      // A new frame began: the previous frame's nodes are done.
      Array.prototype.forEach.call(document.querySelectorAll(".picture g.node.active"),
        function (g) { g.classList.remove("active"); g.classList.add("visited"); });
      state.hudFrame = event.frame;
    }
    var g = nodeInPicture(event.node);
    if (g) {
      g.classList.add("active");
      if (event.event === "error") g.classList.add("failed");
    }
    liveFrameRow(event);
    hudLog(event);
    if (event.event !== "updated") return;
    // The sensor's situation is stored before the message runs; a node's memory update is
    // stored only with an answer that did not fail, so it waits for the message's `done`.
    if (!event.frame) applyMemory(event.data || {});
    else (state.heldMemory[event.message_id] = state.heldMemory[event.message_id] || [])
      .push(event.data || {});
  }

  function liveFrameRow(event) {
    if (!event.frame) return;  // the sensor's frame-0 update is not a frame
    var rows = $("frames");
    var placeholder = rows.querySelector(".placeholder");
    if (placeholder) placeholder.remove();
    var id = "live-" + event.frame + "-" + event.node;
    var row = document.querySelector('#frames tr[data-key="' + cssEscape(id) + '"]');
    if (!row) {
      row = el("tr", "live");
      row.setAttribute("data-key", id);
      row.appendChild(el("td", "num", event.frame));
      row.appendChild(el("td", "node", event.node));
      row.appendChild(el("td", "num", "…"));
      row.appendChild(el("td", "decision", ""));
      rows.appendChild(row);
    }
    row.lastChild.textContent = event.event;
  }

  function summarize(data) {
    if (!data || typeof data !== "object") return "";
    var parts = [];
    Object.keys(data).slice(0, 4).forEach(function (key) {
      var value = data[key];
      if (value === null || value === undefined || value === "") return;
      if (typeof value === "object") value = JSON.stringify(value);
      value = String(value);
      parts.push(key + "=" + (value.length > 60 ? value.slice(0, 57) + "…" : value));
    });
    return parts.join(" ");
  }

  function hudLog(event) {
    var log = $("hud-log");
    var item = el("li", "hud-" + event.event);
    item.appendChild(el("span", "f", "f" + event.frame));
    item.appendChild(el("span", "n", event.node));
    item.appendChild(el("span", "e", event.event));
    item.appendChild(el("span", "d", summarize(event.data)));
    log.insertBefore(item, log.firstChild);
    while (log.children.length > HUD_LOG_LIMIT) log.removeChild(log.lastChild);
  }

  // --- stepping through the last message's frames ---------------------------------------

  /** Show frame `step` of the last trace (0: all): its nodes lit, earlier ones visited. */
  function showStep(step) {
    var trace = state.lastTrace;
    if (!trace) return;
    var total = trace.total_frames || 0;
    state.step = Math.max(0, Math.min(step, total));
    Array.prototype.forEach.call(document.querySelectorAll(".picture g.node"), function (g) {
      g.classList.remove("active", "visited");
    });
    (trace.frames || []).forEach(function (f) {
      var g = nodeInPicture(f.node);
      if (!g) return;
      if (!state.step || f.frame < state.step) g.classList.add("visited");
      else if (f.frame === state.step) g.classList.add("active");
    });
    Array.prototype.forEach.call($("frames").querySelectorAll("tr"), function (row) {
      row.classList.toggle("current", state.step > 0 &&
                           Number(row.getAttribute("data-frame")) === state.step);
    });
    $("step-label").textContent = state.step ? "frame " + state.step + " of " + total : "all";
    $("step-back").disabled = state.step <= 1 && state.step !== 0;
    $("step-forward").disabled = state.step >= total;
  }

  function onFrameTrace(event) {
    if (event.message_id !== state.hudMessage) resetHud(event.message_id);
    state.lastTrace = event;
    state.step = 0;
    $("stepper").hidden = !(event.total_frames > 0);
    $("step-label").textContent = "all";
    $("step-back").disabled = false;
    $("step-forward").disabled = false;
    var rows = $("frames");
    clear(rows);
    (event.frames || []).forEach(function (f) {
      var row = el("tr", f.error ? "failed" : "");
      row.setAttribute("data-frame", f.frame);
      row.appendChild(el("td", "num", f.frame));
      row.appendChild(el("td", "node", f.node));
      row.appendChild(el("td", "num", Number(f.duration_ms || 0).toFixed(1)));
      row.appendChild(el("td", "decision", f.error ? "error: " + f.error : f.decision));
      rows.appendChild(row);
      var g = nodeInPicture(f.node);
      if (g) g.classList.add("visited");
    });
    Array.prototype.forEach.call(document.querySelectorAll(".picture g.node.active"),
      function (g) { g.classList.remove("active"); g.classList.add("visited"); });
    $("frames-summary").textContent = event.total_frames + " frames · " +
      Math.round(event.total_ms) + " ms";
    $("hud-path").textContent = event.path || "";
  }

  // --- memory ----------------------------------------------------------------------

  function applyMemory(data) {
    var changed = Array.isArray(data.changed) ? data.changed : [];
    changed.forEach(function (key) {
      if (Object.prototype.hasOwnProperty.call(data, key)) state.memory[key] = data[key];
    });
    if (changed.length) renderMemory(changed);
  }

  function renderMemory(changed) {
    var list = $("memory");
    clear(list);
    var any = false;
    MEMORY_FIELDS.forEach(function (key) {
      var value = state.memory[key];
      if (value === undefined || value === null || value === "" ||
          (Array.isArray(value) && !value.length)) return;
      any = true;
      var dt = el("dt", "", key.replace(/_/g, " "));
      var dd = el("dd");
      if (Array.isArray(value)) {
        var ul = el("ul");
        value.forEach(function (v) { ul.appendChild(el("li", "", v)); });
        dd.appendChild(ul);
      } else {
        dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      }
      if (changed && changed.indexOf(key) >= 0) { dt.className = dd.className = "changed"; }
      list.appendChild(dt);
      list.appendChild(dd);
    });
    if (!any) list.appendChild(el("dd", "muted", "Nothing remembered yet."));
  }

  function loadState() {
    api("GET", "/api/state").then(function (result) {
      var memory = result.ok && result.data && (result.data.memory ||
        (result.data.state && result.data.state.memory));
      if (memory && typeof memory === "object") {
        state.memory = memory;
        renderMemory();
      }
    });
  }

  // --- controls and machines -------------------------------------------------------

  /** The machine's state text with {field} filled from its data (as runtime/agent/machines.py does). */
  function renderMachineText(machine) {
    var current = (machine.states || {})[machine.state] || {};
    var data = machine.data || {};
    return String(current.text || "").replace(/\{([a-zA-Z_][a-zA-Z0-9_]*)\}/g, function (all, key) {
      var value = data[key];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        return Object.keys(value).map(function (item) {
          return "[" + (value[item] ? "x" : " ") + "] " + item;
        }).join(", ");
      }
      return value === undefined || value === null ? all : String(value);
    });
  }

  /** Apply a button's payload and `go` locally, exactly as the server will. */
  function clickLocally(machine, button) {
    var payload = button.payload || {};
    var data = machine.data = machine.data || {};
    if (payload.reset) data = machine.data = JSON.parse(JSON.stringify(machine.initial_data || {}));
    var add = payload.add || {};
    Object.keys(add).forEach(function (key) {
      var current = data[key] === undefined ? 0 : data[key];
      if (typeof current === "number" && typeof add[key] === "number") data[key] = current + add[key];
    });
    var set = payload.set || {};
    Object.keys(set).forEach(function (key) { data[key] = set[key]; });
    if (payload.toggle) {
      var path = String(payload.toggle).split(".");
      var head = path.shift();
      var tail = path.join(".");
      if (tail && data[head] && typeof data[head] === "object") {
        data[head][tail] = !data[head][tail];
      } else {
        data[head] = !data[head];
      }
    }
    if (button.go && (machine.states || {})[button.go]) machine.state = button.go;
  }

  function onMachineClick(machineId, button) {
    var before = JSON.parse(JSON.stringify(state.machines));
    var machine = state.machines[machineId];
    if (!machine) return;
    if (!send({ type: "action", action: button.action, data: { machine: machineId } })) return;
    state.pendingClick = { machine: machineId, before: before };
    clickLocally(machine, button);
    renderControls();
  }

  function onOfferedClick(control) {
    if (!send({ type: "action", action: control.action })) return;
    state.sent.push({ text: control.label, bubble: userLine(control.label) });
    startMessage();
  }

  function renderControls() {
    var box = $("machines");
    clear(box);
    Object.keys(state.machines).forEach(function (id) {
      var machine = state.machines[id];
      var card = el("div", "machine");
      card.setAttribute("data-machine", id);
      var head = el("div", "machine-head");
      head.appendChild(el("span", "machine-name", machine.name || id));
      head.appendChild(el("span", "machine-state", machine.state));
      card.appendChild(head);
      card.appendChild(el("div", "machine-text", renderMachineText(machine)));
      var buttons = el("div", "machine-buttons");
      var current = (machine.states || {})[machine.state] || {};
      (current.buttons || []).forEach(function (button) {
        var b = el("button", "", button.label);
        b.type = "button";
        b.addEventListener("click", function () { onMachineClick(id, button); });
        buttons.appendChild(b);
      });
      card.appendChild(buttons);
      box.appendChild(card);
    });
    var offered = $("offered");
    clear(offered);
    state.controls.filter(function (c) { return !c.machine; }).forEach(function (control) {
      var b = el("button", "offer", control.label);
      b.type = "button";
      b.addEventListener("click", function () { onOfferedClick(control); });
      offered.appendChild(b);
    });
  }

  // --- transcript -----------------------------------------------------------------------

  function hideEmptyHint() {
    var hint = $("empty-hint");
    if (hint) hint.hidden = true;
  }

  function userLine(text) {
    hideEmptyHint();
    var bubble = el("article", "msg user");
    bubble.appendChild(el("div", "body", text));
    $("transcript").appendChild(bubble);
    scrollToEnd();
    return bubble;
  }

  function systemLine(text, kind, signIn) {
    var line = el("div", "system " + (kind || ""), text);
    if (signIn) {
      line.appendChild(document.createTextNode(" "));
      var a = el("a", "", "Sign in");
      a.href = boot.login_url || "/login/?next=/";
      line.appendChild(a);
    }
    $("transcript").appendChild(line);
    scrollToEnd();
  }

  function setBusy(busy) {
    document.body.classList.toggle("busy", busy);
  }

  function startMessage() {
    resetHud("pending");
    setBusy(true);
  }

  function sendMessage(text) {
    text = text.trim();
    if (!text) return;
    if (!send({ type: "message", text: text })) return;
    state.sent.push({ text: text, bubble: userLine(text) });
    $("message").value = "";
    autosize();
    startMessage();
  }

  function renderHistory() {
    (boot.history || []).forEach(function (m) {
      if (m.role === "user") { userLine(m.text); return; }
      hideEmptyHint();
      var bubble = el("article", "msg assistant");
      var body = el("div", "body");
      md.renderInto(body, m.text);
      bubble.appendChild(body);
      if (m.results && m.results.length) {
        var results = el("div", "answer-results");
        m.results.forEach(function (event) { showResult(results, event); });
        bubble.appendChild(results);
      }
      if (m.message_id) ratingFor(bubble, m.message_id, m.rating || 0);
      $("transcript").appendChild(bubble);
    });
    scrollToEnd();
  }

  function autosize() {
    var box = $("message");
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight, 200) + "px";
  }

  // --- graph switcher and clear -------------------------------------------------

  function wireStepper() {
    $("step-back").addEventListener("click", function () {
      showStep(state.step ? state.step - 1 : (state.lastTrace ? state.lastTrace.total_frames : 0));
    });
    $("step-forward").addEventListener("click", function () { showStep(state.step + 1); });
  }

  function fillGraphs(names) {
    var select = $("graph-select");
    var have = {};
    Array.prototype.forEach.call(select.options, function (o) { have[o.value] = true; });
    names.forEach(function (name) {
      if (!have[name]) select.appendChild(new Option(name, name));
    });
    select.value = state.graph;
  }

  function loadGraphs() {
    var fallback = (boot.graphs && boot.graphs.length) ? boot.graphs : KNOWN_GRAPHS;
    fillGraphs(fallback);
    api("GET", "/api/graph/list").then(function (result) {
      if (!result.ok || !result.data) return;
      var list = Array.isArray(result.data) ? result.data : result.data.graphs;
      if (!Array.isArray(list)) return;
      fillGraphs(list.map(function (g) { return typeof g === "string" ? g : g && g.name; })
        .filter(Boolean));
    });
  }

  function switchGraph(graph) {
    var previous = state.graph;
    if (graph === previous) return;
    api("POST", "/api/graph/switch", { graph: graph }).then(function (result) {
      if (result.ok) {
        showGraph(graph);
        systemLine("Now on graph " + graph + "; memory and history stay.", "info");
      } else {
        $("graph-select").value = previous;
        systemLine(apiError(result, "Switching the graph"), "error");
      }
    });
  }

  function clearConversation() {
    api("POST", "/api/clear", {}).then(function (result) {
      if (result.ok) onCleared();  // the `cleared` event may follow; clearing twice is harmless
      else systemLine(apiError(result, "Clearing"), "error");
    });
  }

  // --- start ------------------------------------------------------------------------

  function start() {
    boot.emptyHint = $("empty-hint");
    renderHistory();
    renderControls();
    renderMemory();
    loadGraphs();
    loadState();
    $("composer").addEventListener("submit", function (e) {
      e.preventDefault();
      sendMessage($("message").value);
    });
    $("message").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        sendMessage($("message").value);
      }
    });
    $("message").addEventListener("input", autosize);
    Array.prototype.forEach.call(document.querySelectorAll(".suggestion"), function (b) {
      b.addEventListener("click", function () { sendMessage(b.textContent); });
    });
    $("graph-select").addEventListener("change", function (e) { switchGraph(e.target.value); });
    $("clear-button").addEventListener("click", clearConversation);
    wireStepper();
    $("pictures").addEventListener("click", function () {
      $("pictures").classList.toggle("zoomed");
    });
    window.addEventListener("online", function () {
      if (!state.socket && state.reconnectTimer) {
        clearTimeout(state.reconnectTimer);
        state.reconnectTimer = null;
        connect();
      }
    });
    connect();
    $("message").focus();
  }

  // For the browser test and for debugging: read-only views of the page's state.
  window.agentChat = {
    lastSeq: function () { return state.lastSeq; },
    socket: function () { return state.socket; },
  };

  start();
})();
