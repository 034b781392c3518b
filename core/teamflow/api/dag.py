"""Server-side SVG drawing of a workflow's step DAG (no JavaScript, no external assets).

Layout: a step's layer is the length of the longest dependency path from a root, so
every edge points down; within a layer, steps are ordered by the mean position of their
dependencies (a barycenter sweep), which keeps the usual fan-out/fan-in shapes free of
crossings. Every piece of text is escaped: step names and descriptions come from plugins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import attrs

NODE_H = 40
LAYER_GAP = 52
NODE_GAP = 28
MARGIN = 16
CHAR_W = 7.4  # 12px monospace
MIN_W = 120

# status -> (fill, stroke); steps of a workflow version (no status) use the first.
PALETTE: dict[str | None, tuple[str, str]] = {
    None: ("#eef2f7", "#5b6b82"),
    "pending": ("#f4f4f5", "#8a8a93"),
    "in_progress": ("#e0f2fe", "#0369a1"),
    "waiting": ("#f3e8ff", "#7e22ce"),
    "completed": ("#dcfce7", "#15803d"),
    "resolved": ("#dcfce7", "#15803d"),
    "failed": ("#fee2e2", "#b91c1c"),
    "cancelled": ("#fef9c3", "#a16207"),
}


@attrs.frozen
class Node:
    """One step to draw: its name, dependencies and (on a task page) its status."""

    name: str
    depends_on: tuple[str, ...] = ()
    status: str | None = None
    note: str = ""  # the second line, e.g. "attempts 2"
    title: str = ""  # hover text, e.g. the step's description


def layers(nodes: Sequence[Node]) -> dict[str, int]:
    """Longest path from a root for every node; unknown dependencies are ignored."""
    deps = {n.name: [d for d in n.depends_on if d != n.name] for n in nodes}
    depth: dict[str, int] = {}

    def visit(name: str, trail: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        known = [d for d in deps[name] if d in deps and d not in trail]  # a cycle cannot recurse forever
        depth[name] = 1 + max((visit(d, trail | {name}) for d in known), default=-1)
        return depth[name]

    for n in nodes:
        visit(n.name, frozenset())
    return depth


def _order(nodes: Sequence[Node], depth: Mapping[str, int]) -> list[list[Node]]:
    rows: list[list[Node]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for n in nodes:
        rows[depth[n.name]].append(n)
    position: dict[str, float] = {}
    for row in rows:
        start = {n.name: i - (len(row) - 1) / 2 for i, n in enumerate(row)}

        def barycenter(n: Node, start: dict[str, float] = start) -> float:
            placed = [position[d] for d in n.depends_on if d in position]
            return sum(placed) / len(placed) if placed else start[n.name]

        row.sort(key=barycenter)
        for i, n in enumerate(row):
            position[n.name] = i - (len(row) - 1) / 2
    return rows


def _width(n: Node) -> float:
    return max(MIN_W, CHAR_W * max(len(n.name), len(n.note)) + 24)


def render(nodes: Sequence[Node], *, label: str = "workflow steps") -> str:
    """The DAG as an inline ``<svg>`` element (a string of escaped markup)."""
    if not nodes:
        return ""
    depth = layers(nodes)
    rows = _order(nodes, depth)
    widths = [sum(_width(n) for n in row) + NODE_GAP * (len(row) - 1) for row in rows]
    total_w = max(widths) + 2 * MARGIN
    total_h = len(rows) * NODE_H + (len(rows) - 1) * LAYER_GAP + 2 * MARGIN
    boxes: dict[str, tuple[float, float, float]] = {}  # name -> (x, y, width)
    for r, row in enumerate(rows):
        x = (total_w - widths[r]) / 2
        y = float(MARGIN + r * (NODE_H + LAYER_GAP))
        for n in row:
            boxes[n.name] = (x, y, _width(n))
            x += _width(n) + NODE_GAP

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="img" aria-label="{escape(label)}" '
        f'width="{total_w:.0f}" height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}">',
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#5b6b82"/></marker></defs>',
    ]
    for n in nodes:
        x2, y2, w2 = boxes[n.name]
        for d in n.depends_on:
            if d not in boxes or d == n.name:
                continue
            x1, y1, w1 = boxes[d]
            sx, sy, tx, ty = x1 + w1 / 2, y1 + NODE_H, x2 + w2 / 2, y2
            bend = (ty - sy) / 2
            curve = f"M {sx:.1f} {sy:.1f} C {sx:.1f} {sy + bend:.1f}, {tx:.1f} {ty - bend:.1f}, "
            curve += f"{tx:.1f} {ty - 1:.1f}"
            out.append(
                f'<path class="edge" d="{curve}" fill="none" stroke="#5b6b82" stroke-width="1.4" '
                'marker-end="url(#dag-arrow)"/>'
            )
    for n in nodes:
        x, y, w = boxes[n.name]
        fill, stroke = PALETTE.get(n.status, PALETTE[None])
        text_y = y + (16.0 if n.note else 25.0)
        out.append('<g class="node">')
        out.append(f"<title>{escape(n.title or n.name)}</title>")
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{NODE_H}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
        out.append(
            f'<text x="{x + w / 2:.1f}" y="{text_y:.1f}" text-anchor="middle" font-family="monospace" '
            f'font-size="12" fill="#111827">{escape(n.name)}</text>'
        )
        if n.note:
            out.append(
                f'<text x="{x + w / 2:.1f}" y="{y + 32:.1f}" text-anchor="middle" font-family="monospace" '
                f'font-size="11" fill="{stroke}">{escape(n.note)}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
