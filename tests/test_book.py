"""The book as one run made it (`tools/book.py run`, which `make test` starts first): every
chapter executed once, the summaries after all of them, the HTML rendered from those very
notebooks under -W. Plus static checks of the sources that need no run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labsupport import toc

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_LIMIT_S = 60  # the chapter contract: a chapter runs in under a minute on 2 cores
NOTEBOOKS = [c.file for c in toc.chapters(root=ROOT, summaries=True)]


def report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def test_every_notebook_is_in_the_toc_and_stripped() -> None:
    listed = set(toc.toc_files(ROOT))
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        rel = notebook.relative_to(ROOT).with_suffix("").as_posix()
        assert rel in listed, f"{rel} is not in _toc.yml"
        cells = json.loads(notebook.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), \
            f"{rel} is committed with outputs"


# --- the run ----------------------------------------------------------------------------


@pytest.mark.parametrize("file", NOTEBOOKS)
def test_notebook_ran_in_the_book_run(book_run: Path, file: str) -> None:
    entries = {n["file"]: n for n in report(book_run)["chapters"] + report(book_run)["summaries"]}
    assert file in entries, f"{file} was not executed in {book_run.name}"
    entry = entries[file]
    assert entry["status"] == "passed", f"{file} failed:\n{entry['error']}"
    assert entry["seconds"] < CHAPTER_LIMIT_S, \
        f"{file} took {entry['seconds']} s, over the {CHAPTER_LIMIT_S} s a chapter may take"


def test_summaries_ran_after_every_chapter(book_run: Path) -> None:
    run = report(book_run)
    assert run["summaries"], "no summary page was executed"
    last_chapter = max(n["finished"] for n in run["chapters"])
    first_summary = min(n["started"] for n in run["summaries"])
    assert first_summary >= last_chapter


def test_capacity_chapters_ran_alone(book_run: Path) -> None:
    run = report(book_run)
    exclusive = {c.file for c in toc.chapters(root=ROOT) if c.exclusive}
    for entry in run["chapters"]:
        if entry["file"] not in exclusive:
            continue
        beside = [n["slug"] for n in run["chapters"] if n is not entry
                  and n["started"] < entry["finished"] and n["finished"] > entry["started"]]
        assert not beside, f"{entry['slug']} measures capacity but ran beside {beside}"


def test_no_process_was_left_running(book_run: Path) -> None:
    assert report(book_run)["leftover_processes"] == []


def test_the_book_rendered_under_W_from_the_executed_notebooks(book_run: Path) -> None:
    run = report(book_run)
    assert run["render"]["status"] == "passed", run["render"]["log_tail"]
    html = book_run / "_build" / "html"
    for rel in toc.toc_files(ROOT):
        assert (html / f"{rel}.html").exists(), f"{rel}.html was not built"
    # -W: a glued number that no cell measured ("glue key not found") fails the render
    # the pages are those of this run: a chapter's page holds its claims' output
    page = (html / "notebooks" / "serving" / "web-single.html").read_text()
    assert "PASS: HTTP predictions equal in-process scikit-learn" in page


def test_executed_notebooks_hold_no_traceback(book_run: Path) -> None:
    for file in NOTEBOOKS:
        cells = json.loads((book_run / "src" / f"{file}.ipynb").read_text())["cells"]
        errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{file}: {errors[0]['ename']}: {errors[0]['evalue']}"
