"""The graph's picture as inline SVG: nodes in columns by depth, edges with their conditions.

Drawn on the server so the admin needs no JavaScript and no CDN. The layout
is a plain layered one: a node's column is its longest distance from the
input node (so the output comes last); unreachable nodes go in a last column.
"""

from __future__ import annotations

from django.utils.html import escape

from graphs.spec import GraphSpec

NODE_W, NODE_H = 136, 40
COL_GAP, ROW_GAP, PAD = 100, 30, 24
LABEL = ('font-size="11" fill="#334155" paint-order="stroke" stroke="#fff" stroke-width="4" '
         'stroke-linejoin="round"')
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
    """The graph as an `<svg>` element (safe to embed: every label is escaped).

    Edges are curves: to the next column straight across; past it, down from
    the source into a lane below the columns they skip and up into the target
    (so they cross no node); backwards, in an arc above. Edges leaving one node
    on the same condition share one label, written once on a white halo.
    """
    column = layers(spec)
    rows: dict[int, list[str]] = {}
    for node in spec.nodes:
        rows.setdefault(column[node.id], []).append(node.id)
    place: dict[str, tuple[float, float]] = {}
    for col, ids in rows.items():
        for row, node_id in enumerate(ids):
            place[node_id] = (PAD + col * (NODE_W + COL_GAP), PAD + 18 + row * (NODE_H + ROW_GAP))
    tallest = max((len(ids) for ids in rows.values()), default=1)
    width = PAD * 2 + (max(rows, default=0) + 1) * (NODE_W + COL_GAP) - COL_GAP
    height = PAD * 2 + 18 + tallest * (NODE_H + ROW_GAP) + ROW_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph-picture" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="graph {escape(spec.name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#64748b"/></marker></defs>',
    ]
    labels: dict[tuple[str, str], tuple[float, float, str]] = {}
    for edge in spec.edges:
        if edge.source not in place or edge.target not in place:
            continue
        path, label_at = _edge_path(place[edge.source], place[edge.target],
                                    _lane(rows, column[edge.source], column[edge.target]))
        parts.append(
            f'<path class="edge" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}" d="{path}" fill="none" stroke="#64748b" '
            f'stroke-width="1.4" marker-end="url(#arrow)"/>')
        if edge.condition:
            labels.setdefault((edge.source, edge.condition), label_at)
    for (_, condition), (x, y, anchor) in labels.items():
        parts.append(f'<text class="condition" x="{x:.0f}" y="{y:.0f}" {LABEL} '
                     f'text-anchor="{anchor}">{escape(condition)}</text>')
    for node in spec.nodes:
        x, y = place[node.id]
        fill = TYPE_COLOURS.get(node.type, EXPERT_COLOUR)
        parts.append(
            f'<g class="node" data-node="{escape(node.id)}"><rect x="{x:.0f}" y="{y:.0f}" '
            f'width="{NODE_W}" height="{NODE_H}" rx="8" fill="{fill}" stroke="#334155"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + 17:.0f}" font-size="14" font-weight="600" '
            f'text-anchor="middle" fill="#0f172a">{escape(node.id)}</text>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + 32:.0f}" font-size="11" '
            f'text-anchor="middle" fill="#475569">{escape(node.type)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _lane(rows: dict[int, list[str]], source: int, target: int) -> float:
    """The height below every node of the columns an edge skips."""
    skipped = [len(rows.get(col, ())) for col in range(source + 1, target)]
    return PAD + 18 + max(skipped, default=1) * (NODE_H + ROW_GAP) - ROW_GAP / 2


def _edge_path(source: tuple[float, float], target: tuple[float, float], lane: float
               ) -> tuple[str, tuple[float, float, str]]:
    """An edge's SVG path, and where its label goes (x, y, text-anchor)."""
    (x1, y1), (x2, y2) = source, target
    if x2 <= x1:  # backwards: an arc above, top to top
        sx, tx = x1 + NODE_W / 2, x2 + NODE_W / 2
        top = min(y1, y2) - 18
        path = f"M{sx:.0f},{y1:.0f} C{sx:.0f},{top:.0f} {tx:.0f},{top:.0f} {tx:.0f},{y2:.0f}"
        return path, ((sx + tx) / 2, top + 4, "middle")
    sx, sy = x1 + NODE_W, y1 + NODE_H / 2
    tx, ty = x2, y2 + NODE_H / 2
    bend = COL_GAP / 2
    if x2 - x1 <= NODE_W + COL_GAP:  # the next column: straight across, curving to its row
        path = f"M{sx:.0f},{sy:.0f} C{sx + bend:.0f},{sy:.0f} {tx - bend:.0f},{ty:.0f} {tx:.0f},{ty:.0f}"
        return path, (sx + 6, sy - 6, "start")
    # Past the next column: down into the lane, along it, up into the target.
    bx = x1 + NODE_W / 2
    by = y1 + NODE_H
    path = (f"M{bx:.0f},{by:.0f} C{bx:.0f},{lane:.0f} {bx:.0f},{lane:.0f} {bx + 24:.0f},{lane:.0f} "
            f"L{tx - bend:.0f},{lane:.0f} C{tx - 12:.0f},{lane:.0f} {tx - 24:.0f},{ty:.0f} "
            f"{tx:.0f},{ty:.0f}")
    return path, (bx + 30, lane - 5, "start")
