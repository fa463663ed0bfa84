"""The book builds under -W (warnings are errors). The notebooks themselves are executed
by nbval in the same test run, so this build skips execution to stay fast; `make book`
executes them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    return re.findall(r"file:\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())


def test_every_chapter_notebook_is_in_the_toc_and_stripped() -> None:
    listed = set(toc_files())
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        rel = notebook.relative_to(ROOT).with_suffix("").as_posix()
        assert rel in listed, f"{rel} is not in _toc.yml"
        cells = json.loads(notebook.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), \
            f"{rel} is committed with outputs"


def test_book_builds_without_warnings(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    result = subprocess.run(
        [jb, "build", str(ROOT), "-W", "-n", "--keep-going", "--config",
         str(tmp_path / "_config.yml"), "--path-output", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    for rel in toc_files():
        assert (html / f"{rel}.html").exists(), f"{rel}.html was not built"


def test_the_intro_map_links_every_chapter() -> None:
    intro = (ROOT / "book" / "intro.md").read_text()
    for rel in toc_files():
        if rel.startswith("notebooks/") and "/summaries/" not in rel:
            assert f"<../{rel}>" in intro, f"book/intro.md does not link {rel}"
