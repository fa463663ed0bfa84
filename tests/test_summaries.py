"""labsupport.summaries: the whole-book map and the need guide, from the toc and the
catalogue (the claim tables are checked by the book run, tests/test_book.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from labsupport import summaries, toc

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent


def test_the_catalogue_has_36_entries_and_only_known_related_patterns() -> None:
    entries = summaries.catalogue(ROOT)
    assert len(entries) == 36
    assert all(e.get("related") for e in entries), "every entry names a related pattern"
    anti = [e for e in entries if e["slug"].split("/")[1].startswith("anti-")]
    # an antipattern's related patterns are its fixes: never another antipattern alone
    assert all(any(not r.split("/")[1].startswith("anti-") for r in e["related"]) for e in anti)


def test_an_unknown_related_slug_is_named(tmp_path: Path) -> None:
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "catalogue.yml").write_text(
        "- {slug: serving/web-single, title: Web single, related: [serving/nowhere]}\n")
    with pytest.raises(ValueError, match="serving/nowhere"):
        summaries.catalogue(tmp_path)


def test_related_pairs_count_a_mutual_mention_once() -> None:
    entries = [{"slug": "a/x", "related": ["a/y"]}, {"slug": "a/y", "related": ["a/x"]},
               {"slug": "a/z", "related": ["a/x"]}]
    assert summaries.related_pairs(entries) == {("a/x", "a/y"), ("a/x", "a/z")}


def test_the_map_draws_every_entry_and_every_relation() -> None:
    fig = summaries.pattern_map(ROOT)
    ax = fig.axes[0]
    entries = summaries.catalogue(ROOT)
    assert len(ax.patches) == len(entries)
    lines = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(lines) == len(summaries.related_pairs(entries))
    dashed = [p for p in ax.patches if p.get_linestyle() not in ("-", "solid")]
    written = {c.slug for c in toc.chapters(root=ROOT)}
    assert len(dashed) == len([e for e in entries if e["slug"] not in written])


def test_the_need_guide_of_the_whole_book_lists_every_chapter_with_its_category() -> None:
    rows = summaries.need_guide().data.splitlines()[2:]
    chapters = toc.chapters()
    assert len(rows) == len(chapters)
    assert all(r.startswith(f"| {toc.CATEGORIES[c.category]} |")
               for r, c in zip(rows, chapters, strict=True))
