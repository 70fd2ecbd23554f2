/* A query result under a data answer: a table, a chart, a CSV, and "How I found this".
 *
 * Draws one `result` event (runtime/wire.py ResultEvent): a compact table of its first
 * TABLE_ROWS rows ("show all N" expands; a header click sorts; numbers right-aligned
 * and formatted as the answers format them), the chart the server suggested (SVG by
 * chart.js; the user switches table <-> chart), a CSV of the rows the event carries,
 * and a fold with the SQL, the rows, the time and how the answer was checked against
 * it. Every cell goes in as text, never as markup.
 *
 *   AgentResults.render(event, {traceUrl: "..." | ""}) -> <section class="result">
 */
(function () {
  "use strict";

  var TABLE_ROWS = 10;
  var CHECKS = {
    grounded: "every figure and name in the answer is in this result",
    repaired: "the first wording stated something this result does not hold; it was " +
              "corrected to match it",
    replaced: "the model's wording did not match this result, so the answer reads it plainly",
    abstained: "the answer gives no figure from it",
  };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(label, className, title) {
    var b = el("button", "small " + (className || ""), label);
    b.type = "button";
    if (title) b.title = title;
    return b;
  }

  /** A number as the answers write it (runtime/agent/nodes/interpreter.py format_value):
   *  two decimals at most, none for a whole number, thousands grouped from 10,000. */
  function formatNumber(value) {
    if (typeof value !== "number" || !isFinite(value)) return String(value);
    var whole = Number.isInteger(value);
    var big = Math.abs(value) >= 10000;
    if (!whole) {
      return big ? value.toLocaleString("en-US", { minimumFractionDigits: 2,
                                                   maximumFractionDigits: 2 })
        : value.toFixed(2);
    }
    return big ? value.toLocaleString("en-US", { maximumFractionDigits: 0 }) : String(value);
  }

  function cellText(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "number" ? formatNumber(value) : String(value);
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  /** "10 rows", "showing 100 of 187 rows", "at least 200 rows (the first 100 shown)". */
  function countText(event) {
    var shown = event.rows.length;
    if (event.capped) {
      return "more than " + plural(event.row_count, "row") + " (the first " + shown +
             " shown)";
    }
    if (shown < event.row_count) return "showing " + shown + " of " + plural(event.row_count, "row");
    return plural(event.row_count, "row");
  }

  // --- CSV ------------------------------------------------------------------------------

  function csvCell(value) {
    if (value === null || value === undefined) return "";
    var text = String(value);
    // A text a spreadsheet would run as a formula is kept as text.
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  /** The rows the event carries as CSV; a capped or cut result says so in the first line. */
  function csvOf(event) {
    var lines = [];
    var note = [];
    if (event.capped) {
      note.push("the query had more than " + event.row_count + " rows; this file holds the " +
                "first " + event.rows.length);
    } else if (event.rows.length < event.row_count) {
      note.push("this file holds the first " + event.rows.length + " of " + event.row_count +
                " rows");
    }
    if (event.shortened) note.push("texts longer than 200 characters are cut");
    if (note.length) lines.push("# " + note.join("; "));
    lines.push(event.columns.map(function (c) { return csvCell(c.name); }).join(","));
    event.rows.forEach(function (row) { lines.push(row.map(csvCell).join(",")); });
    return lines.join("\r\n") + "\r\n";
  }

  function download(event, index) {
    var blob = new Blob([csvOf(event)], { type: "text/csv;charset=utf-8" });
    var url = URL.createObjectURL(blob);
    var a = el("a");
    a.href = url;
    a.download = "result-" + String(event.message_id).slice(0, 8) + "-" + index + ".csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // --- the table ------------------------------------------------------------------------

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;    // empty cells last, either way
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function table(event, view) {
    var box = el("div", "result-table-wrap");
    var t = el("table", "result-table");
    var head = el("tr");
    event.columns.forEach(function (column, i) {
      var th = el("th", column.type === "number" ? "num" : "");
      th.setAttribute("scope", "col");
      var sort = button(column.name, "sort", "sort by " + column.name);
      sort.addEventListener("click", function () {
        view.order = view.sortBy === i && view.order === 1 ? -1 : 1;
        view.sortBy = i;
        fill();
      });
      th.appendChild(sort);
      head.appendChild(th);
    });
    var thead = el("thead");
    thead.appendChild(head);
    t.appendChild(thead);
    var body = el("tbody");
    t.appendChild(body);
    box.appendChild(t);

    function fill() {
      var rows = event.rows.slice();
      if (view.sortBy !== null) {
        rows.sort(function (a, b) {
          var c = compare(a[view.sortBy], b[view.sortBy]);
          // Empty cells stay last whichever way the column is sorted.
          return a[view.sortBy] === null || b[view.sortBy] === null ? c : c * view.order;
        });
      }
      while (body.firstChild) body.removeChild(body.firstChild);
      (view.all ? rows : rows.slice(0, TABLE_ROWS)).forEach(function (row) {
        var tr = el("tr");
        event.columns.forEach(function (column, i) {
          var td = el("td", typeof row[i] === "number" ? "num" : "", cellText(row[i]));
          if (row[i] === null || row[i] === undefined) td.classList.add("null");
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      Array.prototype.forEach.call(head.children, function (th, i) {
        th.setAttribute("aria-sort", view.sortBy !== i ? "none"
          : view.order === 1 ? "ascending" : "descending");
      });
    }
    view.fill = fill;
    fill();
    return box;
  }

  function chart(event) {
    var spec = event.chart;
    var x = event.columns.map(function (c) { return c.name; }).indexOf(spec.x);
    var series = spec.y.map(function (name) {
      var i = event.columns.map(function (c) { return c.name; }).indexOf(name);
      return { name: name, values: event.rows.map(function (row) { return row[i]; }) };
    });
    var box = el("div", "result-chart");
    box.appendChild(window.AgentChart.draw({
      kind: spec.kind, labels: event.rows.map(function (row) { return cellText(row[x]); }),
      series: series, format: formatNumber,
    }));
    return box;
  }

  // --- how I found this -------------------------------------------------------------------

  function found(event, traceUrl) {
    var fold = el("details", "found");
    fold.appendChild(el("summary", "", "How I found this"));
    var sql = el("pre", "sql");
    sql.appendChild(el("code", "", event.sql));
    fold.appendChild(sql);
    var copy = button("Copy SQL", "copy");
    copy.addEventListener("click", function () {
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(event.sql).then(done, function () { select(sql); });
      } else {
        select(sql);  // no clipboard here (plain http): selected, for Ctrl+C
        copy.textContent = "Selected: press Ctrl+C";
      }
    });
    fold.appendChild(copy);
    var facts = el("ul", "facts");
    facts.appendChild(el("li", "", countText(event)));
    facts.appendChild(el("li", "", "ran in " + formatNumber(event.ms) + " ms" +
                                   (event.pid ? " as process " + event.pid : "")));
    if (event.check) {
      var check = el("li", "check " + event.check);
      check.appendChild(el("strong", "", event.check));
      check.appendChild(document.createTextNode(": " + (CHECKS[event.check] || "")));
      facts.appendChild(check);
    }
    fold.appendChild(facts);
    if (traceUrl) {
      var a = el("a", "trace-link", "the whole trace in the admin");
      a.href = traceUrl;
      fold.appendChild(a);
    }
    return fold;
  }

  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // --- the whole block ----------------------------------------------------------------------

  function render(event, options) {
    options = options || {};
    var section = el("section", "result");
    section.setAttribute("data-chart", event.chart.kind);
    var view = { sortBy: null, order: 1, all: false };
    var tools = el("div", "result-tools");
    tools.appendChild(el("span", "result-count", countText(event)));
    var tableBox = event.rows.length ? table(event, view) : null;
    var chartBox = event.chart.kind !== "none" && event.rows.length ? chart(event) : null;
    var more = event.rows.length > TABLE_ROWS
      ? button("Show all " + event.rows.length, "show-all") : null;
    var toTable = button("Table", "view-table");
    var toChart = button("Chart", "view-chart");
    function show(which) {
      tableBox.hidden = which !== "table";
      chartBox.hidden = which !== "chart";
      toTable.setAttribute("aria-pressed", String(which === "table"));
      toChart.setAttribute("aria-pressed", String(which === "chart"));
      if (more) more.hidden = which !== "table";
    }
    if (chartBox && tableBox) {
      toTable.addEventListener("click", function () { show("table"); });
      toChart.addEventListener("click", function () { show("chart"); });
      tools.appendChild(toTable);
      tools.appendChild(toChart);
    }
    if (more) {
      more.addEventListener("click", function () {
        view.all = !view.all;
        more.textContent = view.all ? "Show " + TABLE_ROWS : "Show all " + event.rows.length;
        view.fill();
      });
      tools.appendChild(more);
    }
    if (tableBox) {
      var csv = button("CSV", "csv", "download these rows as CSV");
      csv.addEventListener("click", function () { download(event, options.index || 1); });
      tools.appendChild(csv);
    }
    section.appendChild(tools);
    if (chartBox) section.appendChild(chartBox);
    if (tableBox) section.appendChild(tableBox);
    if (chartBox && tableBox) show("chart");
    section.appendChild(found(event, options.traceUrl || ""));
    return section;
  }

  window.AgentResults = { render: render, csv: csvOf, formatNumber: formatNumber };
})();
