"""The graph's picture as inline SVG: nodes in layers by depth, edges with their conditions.

Drawn on the server so the pages need no JavaScript layout and no CDN. The
layout is a plain layered one: a node's layer is its longest distance from
the input node (so the output comes last); unreachable nodes go in a last
layer. Layers run left to right (the admin, with room to spare) or top to
bottom (the chat page's HUD, a narrow panel): the geometry is worked out
along the layers (`m`) and across them (`c`) and turned into x, y at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.utils.html import escape

from graphs.spec import GraphSpec

NODE_W, NODE_H = 136, 40
PAD, TOP = 24, 18
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


@dataclass(frozen=True)
class Layout:
    """Sizes along the layers (main) and across them (cross), and the way they point."""

    direction: Literal["right", "down"]
    main: float
    """A node's length along the layers."""
    cross: float
    """A node's length across them."""
    layer_gap: float
    """Room between two layers (edges and their labels)."""
    row_gap: float
    """Room between two nodes of one layer."""
    lane_room: float = 0
    """How far beside the skipped nodes edges run past them (room for labels between)."""

    def xy(self, m: float, c: float) -> tuple[float, float]:
        """A point of the picture."""
        return (PAD + m, TOP + PAD + c) if self.direction == "right" else (PAD + c, PAD + m)

    def point(self, m: float, c: float) -> str:
        x, y = self.xy(m, c)
        return f"{x:.0f},{y:.0f}"

    @property
    def label_side(self) -> int:
        """Which side of its edge a label sits on, across the layers: above, or right."""
        return -1 if self.direction == "right" else 1


LAYOUTS = {
    "right": Layout("right", main=NODE_W, cross=NODE_H, layer_gap=100, row_gap=30),
    "down": Layout("down", main=NODE_H, cross=NODE_W, layer_gap=60, row_gap=26, lane_room=70),
}


def graph_svg(spec: GraphSpec, *, direction: Literal["right", "down"] = "right") -> str:
    """The graph as an `<svg>` element (safe to embed: every label is escaped).

    Edges are curves: to the next layer straight across; past it, out of the
    source's side into a lane beside the layers they skip and into the target
    (so they cross no node); backwards, in an arc on the near side. Edges
    leaving one node on the same condition share one label, written once on a
    white halo.
    """
    layout = LAYOUTS[direction]
    layer = layers(spec)
    rows: dict[int, list[str]] = {}
    for node in spec.nodes:
        rows.setdefault(layer[node.id], []).append(node.id)
    step_m, step_c = layout.main + layout.layer_gap, layout.cross + layout.row_gap
    place = {node_id: (depth * step_m, row * step_c)
             for depth, ids in rows.items() for row, node_id in enumerate(ids)}
    extent_m = (max(rows, default=0) + 1) * step_m - layout.layer_gap
    extent_c = max((len(ids) for ids in rows.values()), default=1) * step_c
    width, height = layout.xy(extent_m + PAD, extent_c + PAD)
    if direction == "right":
        height += TOP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph-picture" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="graph {escape(spec.name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#64748b"/></marker></defs>',
    ]
    labels: dict[tuple[str, str], tuple[float, float]] = {}
    for edge in spec.edges:
        if edge.source not in place or edge.target not in place:
            continue
        skipped = [len(rows.get(d, ())) for d in range(layer[edge.source] + 1,
                                                        layer[edge.target])]
        lane = max(skipped, default=1) * step_c - layout.row_gap / 2 + layout.lane_room
        path, label_at = _edge_path(layout, place[edge.source], place[edge.target], lane)
        parts.append(
            f'<path class="edge" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}" d="{path}" fill="none" stroke="#64748b" '
            f'stroke-width="1.4" marker-end="url(#arrow)"/>')
        if edge.condition:
            labels.setdefault((edge.source, edge.condition), label_at)
    for (_, condition), (m, c) in labels.items():
        x, y = layout.xy(m, c)
        parts.append(f'<text class="condition" x="{x:.0f}" y="{y:.0f}" {LABEL} '
                     f'text-anchor="start">{escape(condition)}</text>')
    for node in spec.nodes:
        x, y = layout.xy(*place[node.id])
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


def _edge_path(layout: Layout, source: tuple[float, float], target: tuple[float, float],
               lane: float) -> tuple[str, tuple[float, float]]:
    """An edge's SVG path, and where its label goes (m, c), in layer coordinates."""
    (m1, c1), (m2, c2) = source, target
    main, cross, bend = layout.main, layout.cross, layout.layer_gap / 2
    p = layout.point
    if m2 <= m1:  # backwards: an arc on the near side, from middle to middle
        sm, tm = m1 + main / 2, m2 + main / 2
        near = min(c1, c2) - TOP
        return (f"M{p(sm, c1)} C{p(sm, near)} {p(tm, near)} {p(tm, c2)}",
                ((sm + tm) / 2, near + 4))
    sm, sc = m1 + main, c1 + cross / 2
    tm, tc = m2, c2 + cross / 2
    if m2 - m1 <= main + layout.layer_gap:  # the next layer: across, curving to its row
        return (f"M{p(sm, sc)} C{p(sm + bend, sc)} {p(tm - bend, tc)} {p(tm, tc)}",
                (sm + 6, sc + 6 * layout.label_side))
    # Past the next layer: out of the source's far side into the lane, along it, into the target.
    bm, bc = m1 + main / 2, c1 + cross
    path = (f"M{p(bm, bc)} C{p(bm, lane)} {p(bm, lane)} {p(bm + 24, lane)} "
            f"L{p(tm - bend, lane)} C{p(tm - 12, lane)} {p(tm - 24, tc)} {p(tm, tc)}")
    return path, (bm + 30, lane + 5 * layout.label_side)
