"""A workflow's graph drawn as SVG, on the server, with no external program.

Graphviz's ``dot`` would draw it well but is a binary the service would need installed; a
workflow from a notebook is a small DAG, which a layered drawing shows clearly: each node
on the layer of its longest path from a source (top to bottom), nodes of a layer ordered
by the mean position of their producers (two sweeps, as Sugiyama's method does), edges as
curves from a producer's bottom to a consumer's top, labelled by port in their tooltip.
A node is coloured by its status in a run when one is given, and links to its component.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from insitu.workflows.workflow import Workflow

__all__ = ["STATUS_COLOURS", "workflow_svg"]

STATUS_COLOURS = {  # fill, stroke: the page's palette (green done, blue cached, ...)
    "done": ("#dafbe1", "#1a7f37"),
    "cached": ("#ddf4ff", "#0969da"),
    "failed": ("#ffebe9", "#cf222e"),
    "skipped": ("#f6f8fa", "#8c959f"),
    "running": ("#fff8c5", "#9a6700"),
}
_PLAIN = ("#ffffff", "#57606a")
_CHAR = 7.2  # px per character of the 12px monospace label
_H, _GAP_X, _GAP_Y, _PAD = 34, 28, 56, 12


def _layers(wf: Workflow) -> list[list[str]]:
    up = wf.upstream()
    level: dict[str, int] = {}
    for nid in wf.order():
        level[nid] = 1 + max((level[u] for u in up[nid] if u in level), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for nid in sorted(level):
        layers[level[nid]].append(nid)
    down: dict[str, set[str]] = {n: set() for n in wf.nodes}
    for n, us in up.items():
        for u in us:
            down[u].add(n)
    for sweep in range(2):  # down then up: order by the mean position of the neighbours
        indices = range(1, len(layers)) if sweep == 0 else range(len(layers) - 2, -1, -1)
        for i in indices:
            ref = layers[i - 1] if sweep == 0 else layers[i + 1]
            pos = {n: k for k, n in enumerate(ref)}
            near = up if sweep == 0 else down

            def key(n: str, pos: dict[str, int] = pos, near: dict[str, set[str]] = near) -> float:
                ks = [pos[m] for m in near[n] if m in pos]
                return sum(ks) / len(ks) if ks else float(len(pos))

            layers[i].sort(key=lambda n, key=key: (key(n), n))  # type: ignore[misc]
    return layers


def workflow_svg(
    wf: Workflow,
    statuses: dict[str, str] | None = None,
    link: Callable[[str], str | None] | None = None,
) -> str:
    """The SVG of ``wf``'s graph; ``statuses`` colour the nodes (a run's), ``link`` gives
    the URL a node links to (or None)."""
    statuses = statuses or {}
    layers = _layers(wf)
    width = {n: max(60.0, _CHAR * len(n) + 2 * _PAD) for n in wf.nodes}
    row_w = [sum(width[n] for n in layer) + _GAP_X * (len(layer) - 1) for layer in layers]
    total_w = max(row_w, default=0.0) + 2 * _PAD
    total_h = len(layers) * _H + max(len(layers) - 1, 0) * _GAP_Y + 2 * _PAD
    box: dict[str, tuple[float, float, float]] = {}  # x, y, w
    for i, layer in enumerate(layers):
        x = (total_w - row_w[i]) / 2
        y = float(_PAD + i * (_H + _GAP_Y))
        for n in layer:
            box[n] = (x, y, width[n])
            x += width[n] + _GAP_X
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow-graph" role="img" '
        f'width="{total_w:.0f}" height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}" '
        f'aria-label="Graph of workflow {escape(wf.name)}: {len(wf.nodes)} nodes, '
        f'{len(wf.edges)} edges">',
        f"<title>Workflow {escape(wf.name)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#57606a"/></marker></defs>',
    ]
    for e in sorted(wf.edges, key=lambda e: (e.source, e.target, e.source_port)):
        if e.source not in box or e.target not in box:
            continue
        sx, sy, sw = box[e.source]
        tx, ty, tw = box[e.target]
        x1, y1, x2, y2 = sx + sw / 2, sy + _H, tx + tw / 2, ty
        mid = (y1 + y2) / 2
        label = f"{e.source}.{e.source_port} → {e.target}.{e.target_port}"
        parts.append(
            f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} '
            f'{x2:.1f},{y2 - 1:.1f}" fill="none" stroke="#8c959f" stroke-width="1.5" '
            f'marker-end="url(#arrow)"><title>{escape(label)}</title></path>'
        )
    for n, (x, y, w) in sorted(box.items()):
        status = statuses.get(n)
        fill, stroke = STATUS_COLOURS.get(status or "", _PLAIN)
        node = wf.nodes[n]
        tip = f"{n}: component {node.component}" + (f" ({status})" if status else "")
        if node.map:
            tip += f"; map over {node.map.over}"
        dash = ' stroke-dasharray="5 3"' if node.map else ""
        shape = (
            f'<g class="node" data-node="{escape(n)}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{2 if node.map else 1.5}"'
            f"{dash}/>"
            f'<text x="{x + w / 2:.1f}" y="{y + _H / 2 + 4:.1f}" text-anchor="middle" '
            f'font-family="ui-monospace, monospace" font-size="12" fill="#1f2328">'
            f"{escape(n)}</text></g>"
        )
        href = link(n) if link else None
        parts.append(f'<a href="{escape(href)}">{shape}</a>' if href else shape)
    parts.append("</svg>")
    return "\n".join(parts)
