/* Safe Markdown for model output: a small subset, built as DOM nodes.
 *
 * Model text is untrusted. Nothing here ever assigns innerHTML: every piece of
 * text becomes a text node (so `<img onerror=...>` stays the literal text it
 * is), and the only elements made are the ones named below. Links are made only
 * for http(s) URLs and open with rel="noopener noreferrer".
 *
 * Subset: paragraphs, line breaks, headings (#..###), **bold**, *italic* /
 * _italic_, `code`, fenced ``` code blocks, - / * / 1. lists, [text](url) and
 * bare http(s) URLs.
 */
(function (root) {
  "use strict";

  var SAFE_URL = /^https?:\/\/[^\s<>"']+$/i;
  // One inline token at a time, earliest match wins; `code` first so nothing inside it is parsed.
  var INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([\s\S]+?)\*\*|__([\s\S]+?)__|\*([^*\s][^*]*?)\*|(^|[^\w])_([^_\s][^_]*?)_(?!\w)|\[([^\]]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>"')\]]+[^\s<>"')\].,;:!?])/;

  /** Escape text for use inside HTML (for callers that build strings; this module does not). */
  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function isSafeUrl(url) {
    return SAFE_URL.test(url);
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  }

  function wrap(tag, children) {
    var node = document.createElement(tag);
    children.forEach(function (child) { node.appendChild(child); });
    return node;
  }

  /** Inline Markdown of one piece of text, as a list of DOM nodes. */
  function inline(text) {
    var out = [];
    var rest = String(text);
    while (rest) {
      var m = INLINE.exec(rest);
      if (!m) { out.push(document.createTextNode(rest)); break; }
      var start = m.index;
      if (m[6] !== undefined) {  // _italic_: group 6 is the character before it
        start += m[6].length;
      }
      if (start > 0) out.push(document.createTextNode(rest.slice(0, start)));
      if (m[1] !== undefined) {
        var code = document.createElement("code");
        code.textContent = m[2].replace(/^ (.*) $/, "$1");
        out.push(code);
      } else if (m[3] !== undefined || m[4] !== undefined) {
        out.push(wrap("strong", inline(m[3] !== undefined ? m[3] : m[4])));
      } else if (m[5] !== undefined) {
        out.push(wrap("em", inline(m[5])));
      } else if (m[7] !== undefined) {
        out.push(wrap("em", inline(m[7])));
      } else if (m[8] !== undefined) {
        if (isSafeUrl(m[9])) out.push(link(m[9], m[8]));
        else out.push(document.createTextNode(m[0]));  // javascript:, data:, relative: kept as text
      } else if (m[10] !== undefined) {
        out.push(link(m[10], m[10]));
      }
      rest = rest.slice(m.index + m[0].length);
    }
    return out;
  }

  /** Lines of a paragraph, joined by <br>. */
  function paragraph(lines) {
    var p = document.createElement("p");
    lines.forEach(function (line, i) {
      if (i) p.appendChild(document.createElement("br"));
      inline(line).forEach(function (n) { p.appendChild(n); });
    });
    return p;
  }

  var FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
  var BULLET = /^\s*[-*+]\s+(.*)$/;
  var NUMBER = /^\s*\d{1,9}[.)]\s+(.*)$/;
  var HEADING = /^(#{1,3})\s+(.*?)\s*#*\s*$/;

  /** The whole text as a DocumentFragment. */
  function render(text) {
    var frag = document.createDocumentFragment();
    var lines = String(text == null ? "" : text).replace(/\r\n?/g, "\n").split("\n");
    var i = 0;
    var para = [];
    function flush() {
      if (para.length) frag.appendChild(paragraph(para));
      para = [];
    }
    while (i < lines.length) {
      var line = lines[i];
      var fence = FENCE.exec(line);
      if (fence) {
        flush();
        var body = [];
        i += 1;
        while (i < lines.length && !(FENCE.exec(lines[i]) && FENCE.exec(lines[i])[1] === fence[1])) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1;  // the closing fence (or the end of an unfinished stream)
        var pre = document.createElement("pre");
        var code = document.createElement("code");
        if (fence[2]) code.setAttribute("data-lang", fence[2]);
        code.textContent = body.join("\n");
        pre.appendChild(code);
        frag.appendChild(pre);
        continue;
      }
      var bullet = BULLET.exec(line);
      var number = NUMBER.exec(line);
      if (bullet || number) {
        flush();
        var ordered = !bullet;
        var pattern = ordered ? NUMBER : BULLET;
        var list = document.createElement(ordered ? "ol" : "ul");
        while (i < lines.length && pattern.exec(lines[i])) {
          list.appendChild(wrap("li", inline(pattern.exec(lines[i])[1])));
          i += 1;
        }
        frag.appendChild(list);
        continue;
      }
      var heading = HEADING.exec(line);
      if (heading) {
        flush();
        frag.appendChild(wrap("h" + (heading[1].length + 2), inline(heading[2])));
        i += 1;
        continue;
      }
      if (!line.trim()) flush();
      else para.push(line);
      i += 1;
    }
    flush();
    return frag;
  }

  /** Replace `element`'s content with `text` rendered as safe Markdown. */
  function renderInto(element, text) {
    while (element.firstChild) element.removeChild(element.firstChild);
    element.appendChild(render(text));
  }

  root.AgentMarkdown = { render: render, renderInto: renderInto, escapeHtml: escapeHtml,
                         isSafeUrl: isSafeUrl };
})(window);
