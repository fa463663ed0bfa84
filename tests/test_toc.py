"""_toc.yml is the one list of chapters: a chapter added there (and its notebook) shows up
in the intro's map, its category page and the summaries, with nothing else to edit."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from labsupport import summaries, toc

ROOT = Path(__file__).resolve().parent.parent


def load_book_tool():
    spec = importlib.util.spec_from_file_location("book_tool", ROOT / "tools" / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def book_copy(tmp_path: Path) -> Path:
    """A copy of the book's sources, to add a chapter to."""
    for name in ("_config.yml", "_toc.yml", "book", "notebooks"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def add_dummy_chapter(root: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(
        "# Dummy queue pattern\n\n**Category:** serving · **In one line:** a made-up\n"
        "pattern that only tests use.\n"), nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(notebook, root / "notebooks" / "serving" / "dummy-queue.ipynb")
    text = (root / "_toc.yml").read_text()
    anchor = "          - file: notebooks/serving/anti-all-in-one\n"
    assert anchor in text
    (root / "_toc.yml").write_text(
        text.replace(anchor, anchor + "          - file: notebooks/serving/dummy-queue\n"))


def test_slug_title_and_summary_come_from_the_notebook() -> None:
    web = next(c for c in toc.chapters("serving", root=ROOT) if c.slug == "serving/web-single")
    assert web.title == "Web single pattern"
    assert web.one_line.startswith("one web server holds the API")
    assert web.category == "serving" and not web.is_antipattern and not web.is_summary


def test_summaries_come_only_when_asked() -> None:
    assert not any(c.is_summary for c in toc.chapters(root=ROOT))
    assert any(c.is_summary for c in toc.chapters(root=ROOT, summaries=True))


def test_a_dummy_chapter_needs_only_its_notebook_and_one_toc_line(
        book_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = load_book_tool()
    before = book.chapter_map(book_copy, book_copy / "book" / "intro.md")
    assert "dummy-queue" not in before

    add_dummy_chapter(book_copy)
    changed = book.sync(book_copy)

    intro = (book_copy / "book" / "intro.md").read_text()
    serving = (book_copy / "book" / "serving.md").read_text()
    assert {p.name for p in changed} == {"intro.md", "serving.md"}
    assert "[Dummy queue](<../notebooks/serving/dummy-queue.ipynb>)" in intro
    assert ("[Dummy queue](<../notebooks/serving/dummy-queue.ipynb>): a made-up pattern "
            "that only tests use.") in serving
    counted = re.search(r"(\d+) of the (\d+) entries|All (\d+) entries", before)
    written = int(counted.group(1) or counted.group(3))
    entries = int(counted.group(2) or counted.group(3))
    # the dummy is not a catalogue entry: one more written, one more listed
    now = (f"All {entries + 1} entries are written" if written == entries
           else f"{written + 1} of the {entries + 1} entries are written")
    assert now in intro

    # the summary pages read the same list
    monkeypatch.chdir(book_copy)
    monkeypatch.setattr(toc, "book_root", lambda start=None: book_copy)
    assert "[Dummy queue](../serving/dummy-queue.ipynb)" in summaries.need_guide("serving").data
    claims = summaries.build_claims("serving")
    assert "serving/dummy-queue" in [c.slug for c in claims.chapters]


def test_the_slug_comes_from_the_notebook_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import labsupport as lab

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setenv("MLSDP_NOTEBOOK", "notebooks/qa/shadow-ab.ipynb")
    assert lab.chapter_slug() == "qa/shadow-ab"
    monkeypatch.delenv("MLSDP_NOTEBOOK")
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/book/notebooks/serving/batch.ipynb")
    assert lab.chapter_slug() == "serving/batch"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert lab.chapter_slug() is None
    assert lab.chapter_slug("notebooks/serving/web-single.ipynb") == "serving/web-single"


def test_setting_the_repository_gives_every_chapter_a_colab_cell_and_unsetting_removes_it(
        book_copy: Path) -> None:
    book = load_book_tool()
    config = (book_copy / "_config.yml").read_text()
    assert '  url: ""' in config, "the repository is expected to be unset in the sources"
    url = "https://github.com/someone/mlsdp-book"
    (book_copy / "_config.yml").write_text(config.replace('  url: ""', f'  url: "{url}"'))
    changed = book.sync(book_copy)
    chapters = toc.chapters(root=book_copy)
    assert {p.relative_to(book_copy).with_suffix("").as_posix() for p in changed} >= \
        {c.file for c in chapters}
    for chapter in chapters:
        cells = nbformat.read(book_copy / f"{chapter.file}.ipynb", as_version=4).cells
        first = next(c for c in cells if c.cell_type == "code")
        assert f"git+{url}" in first.source and "google.colab" in first.source
        assert "remove-cell" in first.metadata["tags"]  # the HTML book does not show it
        assert "import labsupport as lab" in next(
            c for c in cells if c.cell_type == "code" and c is not first).source
    assert book.sync(book_copy) == []  # a second sync changes nothing

    (book_copy / "_config.yml").write_text(config)
    book.sync(book_copy)
    for chapter in chapters:
        source = (book_copy / f"{chapter.file}.ipynb").read_text()
        assert "google.colab" not in source
