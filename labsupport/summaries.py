"""What the summary pages show: the claims each chapter recorded in this build, and the
guide from a reader's need to the chapter that answers it. The chapter list comes from
``_toc.yml`` (:mod:`labsupport.toc`), so a new chapter appears here by itself.
Introduced in the *Serving summary* page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
from IPython.display import Markdown

from . import check, toc


@dataclass
class BuildClaims:
    """The claims of a set of chapters, as this run recorded them."""

    table: pd.DataFrame  # one row per claim: chapter, claim, holds, measured
    chapters: list[toc.Chapter]
    not_run: list[toc.Chapter]  # chapters that recorded nothing in this run

    @property
    def failed(self) -> int:
        return int((self.table["holds"] != "yes").sum())

    def styled(self) -> object:
        """The table as the page shows it: left-aligned text, no index."""
        return (self.table.style.hide(axis="index").format(escape="html")
                .set_properties(**{"text-align": "left"}))


def _shown(values: dict) -> str:
    return ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in values.items())


def build_claims(category: str | None = None) -> BuildClaims:
    """The recorded claims of every chapter of ``category`` (all categories if None). In a
    build (``$MLSDP_LAB_RUN`` set), only that build's claims count."""
    run = os.environ.get("MLSDP_LAB_RUN")
    chapters = toc.chapters(category)
    results = check.chapter_results()
    rows, not_run = [], []
    for chapter in chapters:
        recorded = results.get(chapter.slug, {}).get("claims", [])
        if run:
            recorded = [c for c in recorded if c.get("run") == run]
        if not recorded:
            not_run.append(chapter)
        rows += [{"chapter": chapter.title, "claim": c["statement"],
                  "holds": "yes" if c["passed"] else "NO", "measured": _shown(c["measured"])}
                 for c in recorded]
    table = pd.DataFrame(rows, columns=["chapter", "claim", "holds", "measured"])
    return BuildClaims(table=table, chapters=chapters, not_run=not_run)


def need_guide(category: str | None = None) -> Markdown:
    """A "you need -> read" table from each chapter's declared need (notebook metadata
    ``mlsdp.need``; its one-line summary when it declares none); every category's
    chapters, with a category column, when ``category`` is None."""
    every = category is None
    lines = ["| category | you need | read |", "|---|---|---|"] if every else \
        ["| you need | read |", "|---|---|"]
    for chapter in toc.chapters(category):
        need = chapter.need or chapter.one_line or chapter.title
        label = chapter.title.removesuffix(" pattern")
        where = f"{toc.CATEGORIES[chapter.category]} | " if every else ""
        lines.append(f"| {where}{need} | [{label}](../{chapter.slug}.ipynb) |")
    return Markdown("\n".join(lines))


def assert_build(claims: BuildClaims, what: str) -> bool:
    """The summary page's own claim: in a build, every chapter ran in it and every claim
    held; opened on its own, nothing recorded on this machine failed."""
    if os.environ.get("MLSDP_LAB_RUN"):
        return check.claim(
            not claims.not_run and claims.failed == 0 and len(claims.table) > 0,
            f"every {what} chapter ran in this build and every claim it recorded holds",
            chapters=len(claims.chapters) - len(claims.not_run), of=len(claims.chapters),
            claims=len(claims.table), failed=claims.failed,
            not_run=", ".join(c.slug for c in claims.not_run) or "none")
    return check.claim(claims.failed == 0, f"every {what} claim recorded on this machine holds",
                       chapters=len(claims.chapters) - len(claims.not_run),
                       claims=len(claims.table), failed=claims.failed)


def catalogue(root: os.PathLike[str] | str | None = None) -> list[dict]:
    """The catalogue's entries (``book/catalogue.yml``): slug, title and the related
    patterns it names. Raises ValueError naming a related slug that is not an entry."""
    from pathlib import Path

    import yaml

    root = Path(root) if root else toc.book_root()
    entries = yaml.safe_load((root / "book" / "catalogue.yml").read_text())
    slugs = {e["slug"] for e in entries}
    for entry in entries:
        unknown = [r for r in entry.get("related", []) if r not in slugs]
        if unknown:
            raise ValueError(f"book/catalogue.yml: {entry['slug']} names unknown related "
                             f"patterns {unknown}")
    return entries


def related_pairs(entries: list[dict]) -> set[tuple[str, str]]:
    """Each related pair once, in catalogue order (a pattern named by both counts once)."""
    order = {e["slug"]: i for i, e in enumerate(entries)}
    return {tuple(sorted((e["slug"], r), key=order.__getitem__))
            for e in entries for r in e.get("related", [])}


def pattern_map(root: os.PathLike[str] | str | None = None) -> object:
    """The whole book as one figure: every catalogue entry in its category's column (the
    serving column in two), a line between patterns the catalogue relates, red from an
    antipattern to the patterns that fix it; entries the book has not written yet are
    drawn dashed. Introduced in the *whole book* page."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    entries = catalogue(root)
    written = {c.slug for c in toc.chapters(root=root)}
    columns: dict[str, list[dict]] = {c: [] for c in toc.CATEGORIES}
    for entry in entries:
        columns[entry["slug"].split("/")[0]].append(entry)
    serving = columns.pop("serving")
    half = (len(serving) + 1) // 2
    layout = [("Serving", serving[:half]), ("Serving (cont.)", serving[half:])]
    layout += [(toc.CATEGORIES[c], items) for c, items in columns.items()]
    # red is kept for antipatterns: the categories take tab10's other colours
    palette = plt.get_cmap("tab10").colors
    colours = dict(zip(toc.CATEGORIES, [palette[i] for i in (0, 1, 2, 4, 5)], strict=True))
    width, height, step_x, step_y = 1.5, 0.62, 2.0, 0.95
    where: dict[str, tuple[float, float]] = {}
    fig, ax = plt.subplots(figsize=(15, 8.5))
    for col, (heading, items) in enumerate(layout):
        ax.text(col * step_x, 0.75, heading, ha="center", va="bottom", fontsize=11,
                fontweight="bold")
        for row, entry in enumerate(items):
            x, y = col * step_x, -row * step_y
            where[entry["slug"]] = (x, y)
            category = entry["slug"].split("/")[0]
            is_anti = entry["slug"].split("/")[1].startswith("anti-")
            done = entry["slug"] in written
            ax.add_patch(FancyBboxPatch(
                (x - width / 2, y - height / 2), width, height,
                boxstyle="round,pad=0.02,rounding_size=0.08", zorder=3,
                facecolor=(*colours[category][:3], 0.22) if done else "white",
                edgecolor="tab:red" if is_anti else colours[category],
                linestyle="-" if done else "--", linewidth=1.8 if is_anti else 1.2))
            ax.text(x, y, "\n".join(textwrap.wrap(entry["title"], 18)), ha="center",
                    va="center", fontsize=8.5, zorder=4, color="black" if done else "grey",
                    style="italic" if is_anti else "normal")
    anti = {e["slug"] for e in entries if e["slug"].split("/")[1].startswith("anti-")}
    for a, b in sorted(related_pairs(entries)):
        (xa, ya), (xb, yb) = where[a], where[b]
        fixes = a in anti or b in anti
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), zorder=1,
                    arrowprops={"arrowstyle": "-", "lw": 1.1 if fixes else 0.8,
                                "color": "tab:red" if fixes else "0.55",
                                "alpha": 0.7 if fixes else 0.45, "shrinkA": 12, "shrinkB": 12,
                                "connectionstyle": f"arc3,rad={0.35 if xa == xb else 0.08}"})
    rows = max(len(items) for _, items in layout)
    ax.set(xlim=(-width, (len(layout) - 1) * step_x + width),
           ylim=(-(rows - 0.4) * step_y, 1.2))
    ax.axis("off")
    ax.set_title("The catalogue as one map: related patterns linked, antipatterns (italic, "
                 "red) linked in red to their fixes; dashed: not written yet", fontsize=10)
    fig.tight_layout()
    return fig
