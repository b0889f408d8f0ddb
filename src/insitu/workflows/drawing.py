"""A workflow's graph drawn as SVG, on the server, with no external program.

Graphviz's ``dot`` would draw it well but is a binary the service would need installed; a
workflow from a notebook is a small DAG, which a layered drawing shows clearly: each node
on the layer of its longest path from a source (top to bottom), an edge that spans layers
passing through a virtual node on each layer between (so it goes around the nodes there),
the nodes of a layer ordered by the mean position of their neighbours (four sweeps, as
Sugiyama's method does); one curve per linked pair of nodes, its ports in its tooltip.
A node is coloured by its status in a run when one is given, and links to its component.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from itertools import pairwise
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


def _layers(
    wf: Workflow,
) -> tuple[list[list[str]], dict[tuple[str, str], list[str]]]:
    """The nodes by layer, in drawing order, with a virtual node (``\0...``) on each layer
    an edge passes through; and each linked pair's chain of virtual nodes."""
    up = wf.upstream()
    level: dict[str, int] = {}
    for nid in wf.order():
        level[nid] = 1 + max((level[u] for u in up[nid] if u in level), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for nid in sorted(level):
        layers[level[nid]].append(nid)
    ups: dict[str, set[str]] = {n: set() for n in wf.nodes}
    downs: dict[str, set[str]] = {n: set() for n in wf.nodes}
    chains: dict[tuple[str, str], list[str]] = {}
    for v in sorted(up):
        for u in sorted(up[v]):
            chain = [f"\0{u}\0{v}\0{k}" for k in range(level[u] + 1, level[v])]
            chains[(u, v)] = chain
            path = [u, *chain, v]
            for k, virtual in enumerate(chain, start=level[u] + 1):
                layers[k].append(virtual)
            for a, b in pairwise(path):
                ups.setdefault(b, set()).add(a)
                downs.setdefault(a, set()).add(b)
                ups.setdefault(a, set())
                downs.setdefault(b, set())
    for sweep in range(4):  # down, up, down, up: by the mean position of the neighbours
        indices = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        for i in indices:
            ref = layers[i - 1] if sweep % 2 == 0 else layers[i + 1]
            pos = {n: k for k, n in enumerate(ref)}
            near = ups if sweep % 2 == 0 else downs
            old = {n: k for k, n in enumerate(layers[i])}

            def key(n: str, pos: dict[str, int] = pos, near: dict[str, set[str]] = near) -> float:
                ks = [pos[m] for m in near[n] if m in pos]
                return sum(ks) / len(ks) if ks else float(len(pos))

            layers[i].sort(key=lambda n, key=key, old=old: (key(n), old[n]))  # type: ignore[misc]
    return layers, chains


def _curve(points: list[tuple[float, float]]) -> str:
    """A path through ``points`` (top to bottom): vertical tangents at each point."""
    x0, y0 = points[0]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for (xa, ya), (xb, yb) in pairwise(points):
        if xa == xb:
            d.append(f"L{xb:.1f},{yb:.1f}")
        else:
            mid = (ya + yb) / 2
            d.append(f"C{xa:.1f},{mid:.1f} {xb:.1f},{mid:.1f} {xb:.1f},{yb:.1f}")
    return " ".join(d)


def workflow_svg(
    wf: Workflow,
    statuses: dict[str, str] | None = None,
    link: Callable[[str], str | None] | None = None,
) -> str:
    """The SVG of ``wf``'s graph; ``statuses`` colour the nodes (a run's), ``link`` gives
    the URL a node links to (or None)."""
    statuses = statuses or {}
    layers, chains = _layers(wf)
    width = {n: max(60.0, _CHAR * len(n) + 2 * _PAD) for n in wf.nodes}
    for chain in chains.values():
        width.update(dict.fromkeys(chain, 4.0))
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
    ports: dict[tuple[str, str], list[str]] = {}
    for e in sorted(wf.edges, key=lambda e: (e.source, e.target, e.source_port)):
        label = f"{e.source}.{e.source_port} → {e.target}.{e.target_port}"
        ports.setdefault((e.source, e.target), []).append(label)
    for (u, v), chain in sorted(chains.items()):
        ux, uy, uw = box[u]
        vx, vy, vw = box[v]
        points = [(ux + uw / 2, uy + _H)]
        for virtual in chain:
            cx, cy, cw = box[virtual]
            points += [(cx + cw / 2, cy), (cx + cw / 2, cy + _H)]
        points.append((vx + vw / 2, vy - 1))
        label = "; ".join(ports.get((u, v), [f"{u} → {v}"]))
        parts.append(
            f'<path class="edge" d="{_curve(points)}" fill="none" stroke="#8c959f" '
            f'stroke-width="1.5" marker-end="url(#arrow)"><title>{escape(label)}</title></path>'
        )
    for n, (x, y, w) in sorted(box.items()):
        if n not in wf.nodes:
            continue
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
