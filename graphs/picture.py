"""The graph's picture as inline SVG: nodes in columns by depth, edges with their conditions.

Drawn on the server so the admin needs no JavaScript and no CDN. The layout
is a plain layered one: a node's column is its longest distance from the
input node (so the output comes last); unreachable nodes go in a last column.
"""

from __future__ import annotations

from django.utils.html import escape

from graphs.spec import GraphSpec

NODE_W, NODE_H = 120, 34
COL_GAP, ROW_GAP, PAD = 70, 26, 20
TYPE_COLOURS = {
    "input": "#dbeafe", "output": "#dcfce7", "memorizer": "#fef9c3", "ui": "#fae8ff",
    "director": "#ffedd5", "thinker": "#e0e7ff", "interpreter": "#cffafe", "pa": "#ffe4e6",
}
EXPERT_COLOUR = "#fde68a"


def layers(spec: GraphSpec) -> dict[str, int]:
    """Each node's column: its longest distance from the input node (cycles capped)."""
    start = next((n.id for n in spec.nodes if n.type == "input"), None)
    depth: dict[str, int] = {} if start is None else {start: 0}
    cap = len(spec.nodes)
    for _ in range(cap):
        changed = False
        for edge in spec.edges:
            if edge.source in depth:
                candidate = min(depth[edge.source] + 1, cap)
                if candidate > depth.get(edge.target, -1):
                    depth[edge.target] = candidate
                    changed = True
        if not changed:
            break
    last = max(depth.values(), default=-1) + 1
    return {n.id: depth.get(n.id, last) for n in spec.nodes}


def graph_svg(spec: GraphSpec) -> str:
    """The graph as an `<svg>` element (safe to embed: every label is escaped)."""
    column = layers(spec)
    rows: dict[int, list[str]] = {}
    for node in spec.nodes:
        rows.setdefault(column[node.id], []).append(node.id)
    place: dict[str, tuple[float, float]] = {}
    for col, ids in rows.items():
        for row, node_id in enumerate(ids):
            place[node_id] = (PAD + col * (NODE_W + COL_GAP), PAD + row * (NODE_H + ROW_GAP))
    width = PAD * 2 + (max(rows, default=0) + 1) * (NODE_W + COL_GAP) - COL_GAP
    height = PAD * 2 + max((len(ids) for ids in rows.values()), default=1) * (NODE_H + ROW_GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph-picture" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="graph {escape(spec.name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#64748b"/></marker></defs>',
    ]
    for edge in spec.edges:
        if edge.source not in place or edge.target not in place:
            continue
        (x1, y1), (x2, y2) = place[edge.source], place[edge.target]
        sx, sy = x1 + NODE_W, y1 + NODE_H / 2
        tx, ty = x2, y2 + NODE_H / 2
        if x2 <= x1:  # a backward edge: from the node's bottom, around below
            sx, sy, tx, ty = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2 + NODE_H
        parts.append(
            f'<line class="edge" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}" x1="{sx:.0f}" y1="{sy:.0f}" x2="{tx:.0f}" '
            f'y2="{ty:.0f}" stroke="#64748b" stroke-width="1.3" marker-end="url(#arrow)"/>')
        if edge.condition:
            parts.append(
                # Near the source, where edges fanning out of one node are still apart.
                f'<text x="{sx + (tx - sx) * 0.3:.0f}" y="{sy + (ty - sy) * 0.3 - 4:.0f}" '
                f'font-size="9" fill="#475569" text-anchor="middle">'
                f'{escape(edge.condition)}</text>')
    for node in spec.nodes:
        x, y = place[node.id]
        fill = TYPE_COLOURS.get(node.type, EXPERT_COLOUR)
        parts.append(
            f'<g class="node" data-node="{escape(node.id)}"><rect x="{x:.0f}" y="{y:.0f}" '
            f'width="{NODE_W}" height="{NODE_H}" rx="7" fill="{fill}" stroke="#334155"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + 15:.0f}" font-size="12" font-weight="600" '
            f'text-anchor="middle" fill="#0f172a">{escape(node.id)}</text>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + 27:.0f}" font-size="9" '
            f'text-anchor="middle" fill="#475569">{escape(node.type)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
