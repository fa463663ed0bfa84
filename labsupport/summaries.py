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


def need_guide(category: str) -> Markdown:
    """A "you need -> read" table from each chapter's declared need (notebook metadata
    ``mlsdp.need``; its one-line summary when it declares none)."""
    lines = ["| you need | read |", "|---|---|"]
    for chapter in toc.chapters(category):
        need = chapter.need or chapter.one_line or chapter.title
        label = chapter.title.removesuffix(" pattern")
        lines.append(f"| {need} | [{label}](../{chapter.slug}.ipynb) |")
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
