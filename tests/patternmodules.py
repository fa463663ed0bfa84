"""The pattern modules that chapters write with ``%%writefile {WORK}/name.py`` cells.

The book teaches these servers, proxies and workers inside the chapters, so the notebook
cell is their only source. Tests extract them into a folder (``{WORK}`` becomes that
folder), then lint, import and fuzz them like any other code.

    python tests/patternmodules.py OUTDIR    # writes OUTDIR/<category>/<notebook>/<module>.py
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
_MAGIC = re.compile(r"^%%writefile\s+(?:-a\s+)?\{WORK\}/(?P<name>[\w.-]+)\s*$")


@dataclass(frozen=True)
class PatternModule:
    notebook: str  # "serving/web-single", the chapter's slug
    module: str    # "web_single_app"
    filename: str  # "web_single_app.py", or a data file such as "iris.yaml"
    source: str    # the cell body, with {WORK} replaced when extracted

    @property
    def key(self) -> str:
        return f"{self.notebook}:{self.module}"


def find(notebooks: Path = NOTEBOOKS) -> list[PatternModule]:
    """Every ``%%writefile {WORK}/...`` cell of every chapter, in notebook order."""
    found = []
    for path in sorted(notebooks.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        slug = path.relative_to(notebooks).with_suffix("").as_posix()
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            first, _, body = cell.source.partition("\n")
            match = _MAGIC.match(first.strip())
            if match:
                name = match["name"]
                found.append(PatternModule(slug, name.rsplit(".", 1)[0], name, body))
    return found


def python_modules(notebooks: Path = NOTEBOOKS) -> list[PatternModule]:
    """The ``.py`` ones only."""
    return [m for m in find(notebooks) if m.filename.endswith(".py")]


def chapter_dir(out: Path, notebook: str) -> Path:
    """Where one chapter's files go: every chapter gets its own folder, like its WORK."""
    return Path(out) / notebook


def extract(out: str | Path, notebooks: Path = NOTEBOOKS) -> dict[str, Path]:
    """Write every chapter's files under ``out/<slug>/`` with ``{WORK}`` replaced by that
    folder (as the chapter's own WORK would be). Returns ``{"slug:module": path}`` for the
    ``.py`` modules."""
    written = {}
    for mod in find(notebooks):
        folder = chapter_dir(Path(out), mod.notebook)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / mod.filename
        path.write_text(mod.source.replace("{WORK}", str(folder)).rstrip("\n") + "\n")
        if mod.filename.endswith(".py"):
            written[mod.key] = path
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/patternmodules.py OUTDIR", file=sys.stderr)
        return 2
    written = extract(argv[0])
    print(f"{len(written)} pattern modules written under {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
