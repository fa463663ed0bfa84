"""The book's one list of chapters: ``_toc.yml``.

A chapter is registered by its notebook and one line in ``_toc.yml``; everything else
that lists chapters (the intro's map, the category pages, the summary pages) reads them
from here. A chapter's slug is its notebook path under ``notebooks/`` without the
suffix (``serving/web-single``), its title the notebook's first heading. Introduced in
the *Serving summary* page.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

#: What each category is called in the book, in the catalogue's order.
CATEGORIES = {
    "serving": "Serving",
    "qa": "QA",
    "training": "Training",
    "operation": "Operation",
    "lifecycle": "Lifecycle",
}


@dataclass(frozen=True)
class Chapter:
    """One chapter notebook as the table of contents lists it."""

    file: str  # as in _toc.yml: "notebooks/serving/web-single"
    title: str  # the notebook's first heading
    one_line: str  # the "In one line:" sentence of the first cell ("" if none)
    need: str  # notebook metadata mlsdp.need: the reader's need it answers ("" if none)
    # notebook metadata mlsdp.exclusive: the chapter measures the machine's capacity, so a
    # book run executes it alone, not beside another chapter
    exclusive: bool = False

    @property
    def slug(self) -> str:
        return self.file.removeprefix("notebooks/")

    @property
    def category(self) -> str:
        return self.slug.split("/", 1)[0]

    @property
    def is_summary(self) -> bool:
        return self.category == "summaries"

    @property
    def is_antipattern(self) -> bool:
        return self.slug.split("/", 1)[1].startswith("anti-")


def book_root(start: Path | None = None) -> Path:
    """The folder holding ``_toc.yml``: the repository this package was installed from
    (an editable install), else the nearest parent of the working directory that has one."""
    candidates = [Path(__file__).resolve().parent.parent]
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    for folder in candidates:
        if (folder / "_toc.yml").exists():
            return folder
    raise FileNotFoundError("no _toc.yml found: open the chapter from a clone of the book")


def toc_files(root: Path | None = None) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml``, in reading order."""
    root = root or book_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[str] = []

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                found.append(str(entry["file"]).removesuffix(".ipynb").removesuffix(".md"))
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk([{"file": toc["root"]}, *toc.get("parts", []), *toc.get("chapters", [])])
    return found


def read_chapter(root: Path, file: str) -> Chapter:
    """A notebook's title, one-line summary and declared need."""
    notebook = json.loads((root / f"{file}.ipynb").read_text())
    first = next((c for c in notebook["cells"] if c["cell_type"] == "markdown"), None)
    text = "".join(first["source"]) if first else ""
    heading = re.search(r"^#\s+(.+)$", text, flags=re.M)
    one_line = re.search(r"\*\*In one line:\*\*\s*(.+?)(?:\n\n|$)", text, flags=re.S)
    declared = notebook.get("metadata", {}).get("mlsdp", {})
    return Chapter(
        file=file,
        title=heading.group(1).strip() if heading else Path(file).name,
        one_line=" ".join(one_line.group(1).split()) if one_line else "",
        need=declared.get("need", ""),
        exclusive=bool(declared.get("exclusive", False)),
    )


def chapters(category: str | None = None, *, root: Path | None = None,
             summaries: bool = False) -> list[Chapter]:
    """The chapter notebooks of ``_toc.yml`` in reading order, of one ``category``
    (``"serving"``...) or all; summary pages only with ``summaries=True``."""
    root = root or book_root()
    found = [read_chapter(root, f) for f in toc_files(root)
             if f.startswith("notebooks/") and (root / f"{f}.ipynb").exists()]
    return [c for c in found
            if (summaries or not c.is_summary) and (category is None or c.category == category)]
