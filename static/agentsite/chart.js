/* Charts of a query result, as SVG: bars (one per row) and lines (one point per row).
 *
 * Offline and small on purpose: no library, no CDN, no inline style (the page's CSP
 * allows none): shapes get their place from SVG attributes and their colours from
 * classes in chat.css (`.series-0`, `.series-1`...). Labels go in as text nodes,
 * never as markup. The chart kind is decided on the server
 * (runtime/domain/results.py), never here.
 *
 *   AgentChart.draw({kind: "bar"|"line", labels: [...], series: [{name, values}],
 *                    format: function (number) -> text}) -> <svg>
 */
(function () {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";
  var WIDTH = 560;
  var BAR_ROW = 22;         // px per bar row (horizontal bars: long names stay readable)
  var LINE_HEIGHT = 220;
  var LABEL_CHARS = 22;     // a label longer than this is cut (the table has it whole)

  function node(tag, attrs, text) {
    var el = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    if (text !== undefined && text !== null) el.textContent = String(text);
    return el;
  }

  function short(text) {
    text = text === null || text === undefined ? "—" : String(text);
    return text.length > LABEL_CHARS ? text.slice(0, LABEL_CHARS - 1) + "…" : text;
  }

  function extent(series) {
    var low = 0, high = 0;
    series.forEach(function (s) {
      s.values.forEach(function (v) {
        if (typeof v !== "number" || !isFinite(v)) return;
        low = Math.min(low, v);
        high = Math.max(high, v);
      });
    });
    return high === low ? [low, low + 1] : [low, high];
  }

  function legend(svg, series, y) {
    if (series.length < 2) return;
    series.forEach(function (s, i) {
      var x = 8 + i * 140;
      svg.appendChild(node("rect", { x: x, y: y, width: 10, height: 10,
                                     "class": "mark series-" + (i % 6) }));
      svg.appendChild(node("text", { x: x + 14, y: y + 9, "class": "legend" }, short(s.name)));
    });
  }

  /** Horizontal bars: one row per label, one bar per series in it. */
  function bars(spec) {
    var labels = spec.labels, series = spec.series, format = spec.format;
    var left = 170, right = 60, top = 6;
    var plot = WIDTH - left - right;
    var height = top + labels.length * BAR_ROW + (series.length > 1 ? 24 : 6);
    var range = extent(series);
    var scale = function (v) { return (v - range[0]) / (range[1] - range[0]) * plot; };
    var zero = scale(0);
    var svg = node("svg", { viewBox: "0 0 " + WIDTH + " " + height, "class": "chart bar",
                            role: "img", "aria-label": "bar chart of " + series.map(
                              function (s) { return s.name; }).join(", ") });
    var thick = (BAR_ROW - 6) / series.length;
    labels.forEach(function (label, row) {
      var y = top + row * BAR_ROW;
      svg.appendChild(node("text", { x: left - 6, y: y + BAR_ROW / 2 + 4, "class": "label",
                                     "text-anchor": "end" }, short(label)));
      series.forEach(function (s, i) {
        var v = s.values[row];
        if (typeof v !== "number" || !isFinite(v)) return;
        var x = left + Math.min(zero, scale(v));
        var w = Math.max(Math.abs(scale(v) - zero), 1);
        var bar = node("rect", { x: x.toFixed(1), y: (y + 2 + i * thick).toFixed(1),
                                 width: w.toFixed(1), height: Math.max(thick - 1, 2).toFixed(1),
                                 "class": "mark series-" + (i % 6) });
        bar.appendChild(node("title", {}, short(label) + " · " + s.name + ": " + format(v)));
        svg.appendChild(bar);
        if (series.length === 1) {
          svg.appendChild(node("text", { x: (left + Math.max(zero, scale(v)) + 4).toFixed(1),
                                         y: y + BAR_ROW / 2 + 4, "class": "value" }, format(v)));
        }
      });
    });
    svg.appendChild(node("line", { x1: left + zero, x2: left + zero, y1: top,
                                   y2: top + labels.length * BAR_ROW, "class": "axis" }));
    legend(svg, series, height - 16);
    return svg;
  }

  /** Lines over the rows in their order (the server sends dates; the table sorts them). */
  function lines(spec) {
    var labels = spec.labels, series = spec.series, format = spec.format;
    var left = 64, right = 32, top = 10, bottom = 40 + (series.length > 1 ? 18 : 0);
    var plot = { w: WIDTH - left - right, h: LINE_HEIGHT - top - bottom };
    var range = extent(series);
    var x = function (i) { return left + (labels.length < 2 ? plot.w / 2
                                          : i / (labels.length - 1) * plot.w); };
    var y = function (v) { return top + plot.h - (v - range[0]) / (range[1] - range[0]) * plot.h; };
    var svg = node("svg", { viewBox: "0 0 " + WIDTH + " " + LINE_HEIGHT, "class": "chart line",
                            role: "img", "aria-label": "line chart of " + series.map(
                              function (s) { return s.name; }).join(", ") });
    [range[0], (range[0] + range[1]) / 2, range[1]].forEach(function (v) {
      svg.appendChild(node("line", { x1: left, x2: left + plot.w, y1: y(v).toFixed(1),
                                     y2: y(v).toFixed(1), "class": "grid" }));
      svg.appendChild(node("text", { x: left - 6, y: (y(v) + 4).toFixed(1), "class": "label",
                                     "text-anchor": "end" }, format(v)));
    });
    var every = Math.max(1, Math.ceil(labels.length / 6));
    labels.forEach(function (label, i) {
      if (i % every) return;  // every few, so that none overlaps the next
      svg.appendChild(node("text", { x: x(i).toFixed(1), y: top + plot.h + 16, "class": "label",
                                     "text-anchor": "middle" }, short(label)));
    });
    series.forEach(function (s, n) {
      var points = [];
      s.values.forEach(function (v, i) {
        if (typeof v !== "number" || !isFinite(v)) return;
        points.push(x(i).toFixed(1) + "," + y(v).toFixed(1));
        var dot = node("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3,
                                   "class": "mark series-" + (n % 6) });
        dot.appendChild(node("title", {}, short(labels[i]) + " · " + s.name + ": " + format(v)));
        svg.appendChild(dot);
      });
      svg.insertBefore(node("polyline", { points: points.join(" "),
                                          "class": "trend series-" + (n % 6) }), svg.firstChild);
    });
    legend(svg, series, LINE_HEIGHT - 14);
    return svg;
  }

  window.AgentChart = {
    draw: function (spec) {
      spec.format = spec.format || String;
      return spec.kind === "line" ? lines(spec) : bars(spec);
    },
  };
})();
