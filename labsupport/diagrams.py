"""Architecture diagrams drawn from code with matplotlib: no Graphviz, no CDN, no image
files, so they render the same in JupyterLab, Binder, Colab and the built book.

    d = Diagram("Web single")
    d.node("client", "Client", 0, 0, kind="client")
    d.node("api", "FastAPI\\n+ preprocessing\\n+ ONNX model", 2.5, 0, kind="service")
    d.edge("client", "api", "POST /predict")
    d.draw()

Introduced in *serving/web-single*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

KINDS = {
    # kind: (face colour, edge colour, box style)
    "client": ("#eef2f7", "#5b6b82", "round,pad=0.08,rounding_size=0.25"),
    "service": ("#dbeafe", "#1d4ed8", "round,pad=0.08,rounding_size=0.08"),
    "proxy": ("#ede9fe", "#6d28d9", "round,pad=0.08,rounding_size=0.08"),
    "model": ("#dcfce7", "#15803d", "round,pad=0.08,rounding_size=0.08"),
    "worker": ("#fef3c7", "#b45309", "round,pad=0.08,rounding_size=0.08"),
    "store": ("#fee2e2", "#b91c1c", "round,pad=0.08,rounding_size=0.3"),
    "queue": ("#ffedd5", "#c2410c", "round4,pad=0.08,rounding_size=0.15"),
    "group": ("none", "#94a3b8", "round,pad=0.1,rounding_size=0.1"),
}


@dataclass
class _Node:
    key: str
    label: str
    x: float
    y: float
    kind: str
    width: float
    height: float


class Diagram:
    """Boxes at (x, y) in grid units, joined by labelled arrows."""

    def __init__(self, title: str = "", *, box: tuple[float, float] = (1.7, 0.8)):
        self.title = title
        self.box = box
        self.nodes: dict[str, _Node] = {}
        self.edges: list[tuple[str, str, str, dict]] = []
        self.groups: list[tuple[str, list[str]]] = []

    def node(self, key: str, label: str, x: float, y: float, *, kind: str = "service",
             width: float | None = None, height: float | None = None) -> Diagram:
        """Add a box; ``kind`` sets its colour and shape (see ``KINDS``)."""
        if kind not in KINDS or kind == "group":
            raise ValueError(f"kind must be one of {sorted(set(KINDS) - {'group'})}")
        self.nodes[key] = _Node(key, label, x, y, kind, width or self.box[0],
                                height or self.box[1])
        return self

    def edge(self, source: str, target: str, label: str = "", *, dashed: bool = False,
             bend: float = 0.0, colour: str = "#334155") -> Diagram:
        """Add an arrow from ``source`` to ``target``; ``bend`` curves it (e.g. 0.3)."""
        for key in (source, target):
            if key not in self.nodes:
                raise KeyError(f"no node {key!r}; add it with node() first")
        self.edges.append((source, target, label, {"dashed": dashed, "bend": bend,
                                                   "colour": colour}))
        return self

    def group(self, label: str, keys: list[str]) -> Diagram:
        """Draw a dashed frame around some nodes (a host, a pod, a process)."""
        self.groups.append((label, keys))
        return self

    def _label_position(self, source: str, target: str, bend: float) -> tuple[float, float]:
        """The middle of the arrow: on the straight line, or on the arc of a bent one
        (matplotlib's arc3 puts the control point ``bend`` x the length off the line)."""
        a, b = self.nodes[source], self.nodes[target]
        dx, dy = b.x - a.x, b.y - a.y
        mx, my = (a.x + b.x) / 2 + bend * dy / 2, (a.y + b.y) / 2 - bend * dx / 2
        if abs(dy) < 1e-9 and not bend:  # straight across: write above the arrow
            my += 0.17
        return mx, my

    def draw(self, *, scale: float = 1.1) -> Any:
        """Render and return the matplotlib figure."""
        xs = [n.x for n in self.nodes.values()]
        ys = [n.y for n in self.nodes.values()]
        for source, target, _, style in self.edges:  # a bent arrow can leave the boxes' span
            if style["bend"]:
                mx, my = self._label_position(source, target, style["bend"])
                middle = (self.nodes[source].y + self.nodes[target].y) / 2
                xs.append(mx)
                ys.append(my + (0.25 if my >= middle else -0.25))
        widths = [n.width for n in self.nodes.values()]
        heights = [n.height for n in self.nodes.values()]
        pad_x = max(widths) / 2 + 0.35
        pad_y = max(heights) / 2 + (0.55 if self.groups else 0.3)
        x0, x1 = min(xs) - pad_x, max(xs) + pad_x
        y0, y1 = min(ys) - pad_y, max(ys) + pad_y
        fig, ax = plt.subplots(figsize=((x1 - x0) * scale, (y1 - y0) * scale))
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.axis("off")
        for label, keys in self.groups:
            members = [self.nodes[k] for k in keys]
            gx0 = min(n.x - n.width / 2 for n in members) - 0.25
            gx1 = max(n.x + n.width / 2 for n in members) + 0.25
            gy0 = min(n.y - n.height / 2 for n in members) - 0.25
            gy1 = max(n.y + n.height / 2 for n in members) + 0.35
            face, edge, style = KINDS["group"]
            ax.add_patch(FancyBboxPatch((gx0, gy0), gx1 - gx0, gy1 - gy0, boxstyle=style,
                                        fc=face, ec=edge, ls="--", lw=1, zorder=0))
            ax.text(gx0 + 0.08, gy1 - 0.05, label, fontsize=8, color=edge, va="top")
        patches = {}
        for n in self.nodes.values():
            face, edge, style = KINDS[n.kind]
            patch = FancyBboxPatch((n.x - n.width / 2, n.y - n.height / 2), n.width, n.height,
                                   boxstyle=style, fc=face, ec=edge, lw=1.4, zorder=2)
            ax.add_patch(patch)
            patches[n.key] = patch
            ax.text(n.x, n.y, n.label, ha="center", va="center", fontsize=8.5, zorder=3)
        for source, target, label, style in self.edges:
            a, b = self.nodes[source], self.nodes[target]
            ax.annotate(
                "", xy=(b.x, b.y), xytext=(a.x, a.y), zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": style["colour"], "lw": 1.3,
                            "ls": "--" if style["dashed"] else "-",
                            "shrinkA": 2, "shrinkB": 2,
                            "patchA": patches[source], "patchB": patches[target],
                            "connectionstyle": f"arc3,rad={style['bend']}"})
            if label:
                mx, my = self._label_position(source, target, style["bend"])
                ax.text(mx, my, label, ha="center", va="center", fontsize=7.5,
                        color=style["colour"], zorder=4,
                        bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1})
        if self.title:
            ax.set_title(self.title, fontsize=11)
        fig.tight_layout()
        return fig
