"""Build the book the one way `make test` and `make book` share.

    python tools/book.py sync                 # regenerate the chapter lists in book/*.md
    python tools/book.py run OUT [--jobs 2] [--only SLUG ...] [--no-render]

``run`` executes every chapter of ``_toc.yml`` once, ``--jobs`` at a time, each in its
own kernel (a chapter that measures capacity, notebook metadata ``mlsdp.exclusive``, runs
alone); then, when all of them have finished, the summary pages; then it renders the
HTML book from exactly those executed notebooks (Sphinx with ``-W``: a warning fails the
build). Everything goes under OUT (one folder per run, so two runs at once never mix):

    OUT/src/             the book's sources with the executed notebooks
    OUT/results/         the claims the chapters recorded (the summaries read them)
    OUT/_build/html/     the rendered book
    OUT/report.json      each notebook's status, time and error; the render's status

``sync`` rewrites the parts of ``book/intro.md`` and the category pages between
``<!-- chapters:... -->`` markers from ``_toc.yml`` (and ``book/catalogue.yml`` for the
entries not written yet), so that adding a chapter takes the notebook and one toc line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
from itertools import zip_longest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labsupport import toc  # noqa: E402

CELL_TIMEOUT_S = 180
# what a run copies beside the executed notebooks (book/production.md includes deploy/ files)
SOURCES = ["_config.yml", "_toc.yml", "book", "notebooks", "deploy"]


# --- sync: the generated chapter lists ------------------------------------------------


def _link(chapter: toc.Chapter, label: str, page: Path, root: Path) -> str:
    target = os.path.relpath(root / f"{chapter.file}.ipynb", page.parent)
    return f"[{label}](<{target}>)"


def _label(chapter: toc.Chapter) -> str:
    return re.sub(r"\s+pattern$", "", re.sub(r"\s*\(antipattern\)", "", chapter.title))


def chapter_map(root: Path, page: Path) -> str:
    """The intro's map: every catalogue entry by category, linked where it is written."""
    catalogue = yaml.safe_load((root / "book" / "catalogue.yml").read_text())
    written = {c.slug: c for c in toc.chapters(root=root)}
    columns: dict[str, list[str]] = {name: [] for name in toc.CATEGORIES}
    number = 0
    entries = [(e["slug"], e["title"]) for e in catalogue]
    entries += [(slug, _label(c)) for slug, c in written.items()
                if slug not in {e["slug"] for e in catalogue}]
    for slug, title in entries:
        category = slug.split("/", 1)[0]
        if category not in columns:
            continue
        number += 1
        anti = slug.split("/", 1)[1].startswith("anti-")
        text = _link(written[slug], title, page, root) if slug in written else title
        text += " *(antipattern)*" if anti else ""
        text += "" if slug in written else " (to come)"
        columns[category].append(f"{number}. {text}")
    done = sum(1 for slug, _ in entries if slug in written)
    status = (f"All {number} entries are written and run." if done == number else
              f"{done} of the {number} entries are written and run; the others are on their way.")
    lines = [status,
             ""]
    groups = [("Serving", ["serving"]), ("QA and training", ["qa", "training"]),
              ("Operation and lifecycle", ["operation", "lifecycle"])]
    cells = []
    for _, names in groups:
        items: list[str] = []
        for name in names:
            if columns[name] and len(names) > 1:
                items.append(f"**{toc.CATEGORIES[name]}**")
            items += columns[name]
        cells.append(items)
    lines.append("| " + " | ".join(title for title, _ in groups) + " |")
    lines.append("|" + "---|" * len(groups))
    for row in zip_longest(*cells, fillvalue=""):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def chapter_list(root: Path, page: Path, category: str) -> str:
    """A category page's list of its chapters, each with its one-line summary."""
    lines = []
    for chapter in toc.chapters(category, root=root):
        kind = " *(antipattern)*" if chapter.is_antipattern else ""
        summary = f": {chapter.one_line}" if chapter.one_line else ""
        lines.append(f"- {_link(chapter, _label(chapter), page, root)}{kind}{summary}")
    return "\n".join(lines) if lines else "No chapter of this category is written yet."


MARKER = re.compile(r"(<!-- chapters:(?P<kind>[a-z-]+)(?: (?P<arg>[a-z]+))? -->\n)(.*?)"
                    r"(<!-- chapters:end -->)", flags=re.S)


COLAB_TAG = "colab-setup"


def colab_cell_source(repository: str) -> str:
    return ("# Only in Google Colab: install the book's helper package and what it needs\n"
            "# (`make lab` and Binder have them already). The book hides this cell.\n"
            "import sys\n\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install --quiet \"labsupport[colab] @ git+{repository}\"")


def sync_colab_cells(root: Path) -> list[Path]:
    """Give every chapter a first cell that installs the book's package in Colab when the
    publisher set ``repository.url``; remove those cells while it is unset."""
    import nbformat

    config = yaml.safe_load((root / "_config.yml").read_text())
    repository = ((config.get("repository") or {}).get("url") or "").rstrip("/")
    changed = []
    for chapter in toc.chapters(root=root):  # summaries read _toc.yml: they need a clone
        path = root / f"{chapter.file}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        cells = [c for c in notebook.cells if COLAB_TAG not in c.metadata.get("tags", [])]
        if repository:
            cell = nbformat.v4.new_code_cell(colab_cell_source(repository))
            cell.metadata["tags"] = ["remove-cell", COLAB_TAG]
            first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
            old = [c for c in notebook.cells if COLAB_TAG in c.metadata.get("tags", [])]
            if old and old[0].source == cell.source:
                cell = old[0]  # unchanged: keep its id, write nothing
            cells.insert(first_code, cell)
        if [c.get("id") for c in cells] != [c.get("id") for c in notebook.cells]:
            notebook.cells = cells
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def sync(root: Path = ROOT) -> list[Path]:
    """Regenerate every marked chapter list under ``book/`` and the chapters' Colab cells;
    return the files changed."""
    changed = sync_colab_cells(root)
    for page in sorted((root / "book").glob("*.md")):
        text = page.read_text()

        def fill(match: re.Match[str], page: Path = page) -> str:
            kind, arg = match["kind"], match["arg"]
            body = chapter_map(root, page) if kind == "map" else chapter_list(root, page, arg)
            return f"{match[1]}{body}\n{match[5]}"

        new = MARKER.sub(fill, text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


# --- run: execute once, then render ---------------------------------------------------


def execute_one(source: Path, target: Path) -> int:
    """Execute one notebook in a fresh kernel (working folder: the notebook's own), and
    save it with its outputs to ``target``, also when a cell failed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    status = 0
    try:
        client.execute()
    except CellExecutionError as error:
        print(re.sub(r"\x1b\[[0-9;]*m", "", str(error))[-3000:], file=sys.stderr)  # no colours
        status = 1
    finally:
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    return status


def _execute(root: Path, out: Path, chapter: toc.Chapter, run_id: str) -> dict:
    source = root / f"{chapter.file}.ipynb"
    target = out / "src" / f"{chapter.file}.ipynb"
    env = {**os.environ, "MLSDP_NOTEBOOK": f"{chapter.file}.ipynb", "MLSDP_LAB_RUN": run_id,
           "MLSDP_LAB_RESULTS": str(out / "results"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    started = time.time()
    done = subprocess.run([sys.executable, __file__, "execute", str(source), str(target)],
                          env=env, capture_output=True, text=True)
    finished = time.time()
    status = "passed" if done.returncode == 0 else "failed"
    print(f"  {status:6} {finished - started:6.1f} s  {chapter.slug}", flush=True)
    return {"slug": chapter.slug, "file": chapter.file, "status": status,
            "started": started, "finished": finished, "seconds": round(finished - started, 1),
            "error": done.stderr[-3000:] if done.returncode else ""}


def _execute_all(root: Path, out: Path, chapters: list[toc.Chapter], jobs: int,
                 run_id: str) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda c: _execute(root, out, c, run_id), chapters))


def _render_config(root: Path) -> dict:
    """The book's config for rendering executed notebooks: no execution; the repository
    and launch buttons only when the publisher set ``repository.url``."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    repository = (config.get("repository") or {}).get("url") or ""
    if not repository:
        config.pop("repository", None)
        config["html"]["use_repository_button"] = False
        config["html"]["use_issues_button"] = False
        config["launch_buttons"] = {"notebook_interface": "jupyterlab", "binderhub_url": "",
                                    "colab_url": "", "jupyterhub_url": "", "thebe": False}
    return config


def render(out: Path, strict: bool = True) -> dict:
    """Sphinx HTML of OUT/src into OUT/_build/html; warnings fail a strict build."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    command = [jb, "build", str(out / "src"), "--builder", "html", "--path-output", str(out)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    (out / "render.log").write_text(done.stdout + done.stderr)
    return {"status": "passed" if done.returncode == 0 else "failed",
            "seconds": round(time.time() - started, 1),
            "log_tail": (done.stdout + done.stderr)[-4000:] if done.returncode else ""}


def leftover_processes(run_id: str) -> list[str]:
    """Processes a notebook of this run started and did not stop (labsupport tags them)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if (proc.info["status"] != psutil.STATUS_ZOMBIE
                    and proc.environ().get("MLSDP_LAB") == run_id):
                found.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:160]}")
                proc.kill()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def run(out: Path, *, root: Path = ROOT, jobs: int = 2, only: list[str] | None = None,
        do_render: bool = True, strict: bool = True) -> dict:
    """Execute the chapters, then the summaries, then render; write OUT/report.json."""
    if out.exists():
        shutil.rmtree(out)
    (out / "src").mkdir(parents=True)
    sync(root)
    for name in SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / "src" / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        else:
            shutil.copy2(source, out / "src" / name)
    (out / "src" / "_config.yml").write_text(yaml.safe_dump(_render_config(root),
                                                            sort_keys=False))
    run_id = f"{out.name}-{os.getpid()}"
    everything = toc.chapters(root=root, summaries=True)
    chapters = [c for c in everything if not c.is_summary and (not only or c.slug in only)]
    # a summary page checks that every chapter ran in this build: none for a partial run
    summaries = [c for c in everything if c.is_summary and not only]
    started = time.time()
    shared = [c for c in chapters if not c.exclusive]
    alone = [c for c in chapters if c.exclusive]
    print(f"Executing {len(shared)} chapters, {jobs} at a time (run {run_id}):", flush=True)
    report: dict = {"run": run_id, "jobs": jobs, "chapters": [], "summaries": []}
    report["chapters"] = _execute_all(root, out, shared, jobs, run_id)
    if alone:
        # a capacity measurement needs the whole machine: nothing runs beside it
        print(f"Executing {len(alone)} chapters that measure capacity, one at a time:",
              flush=True)
        report["chapters"] += _execute_all(root, out, alone, 1, run_id)
    print(f"Executing {len(summaries)} summary pages, after every chapter:", flush=True)
    report["summaries"] = _execute_all(root, out, summaries, jobs, run_id)
    report["execute_seconds"] = round(time.time() - started, 1)
    report["leftover_processes"] = leftover_processes(run_id)
    if do_render:
        print("Rendering the HTML book from the executed notebooks...", flush=True)
        report["render"] = render(out, strict=strict)
        print(f"  {report['render']['status']} in {report['render']['seconds']} s", flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def failures(report: dict) -> list[str]:
    """One line per thing that went wrong in a run."""
    lines = [f"{n['slug']} failed:\n{n['error']}" for n in report["chapters"] + report["summaries"]
             if n["status"] != "passed"]
    lines += [f"left running: {p}" for p in report.get("leftover_processes", [])]
    if report.get("render", {}).get("status") == "failed":
        lines.append("the HTML render failed:\n" + report["render"]["log_tail"])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync")
    execute = sub.add_parser("execute")
    execute.add_argument("source", type=Path)
    execute.add_argument("target", type=Path)
    runner = sub.add_parser("run")
    runner.add_argument("out", type=Path)
    runner.add_argument("--jobs", type=int, default=2)
    runner.add_argument("--only", nargs="*", help="chapter slugs, e.g. serving/web-single")
    runner.add_argument("--no-render", action="store_true")
    runner.add_argument("--publish", type=Path, help="copy the HTML here when all went well")
    args = parser.parse_args()
    if args.command == "sync":
        for page in sync():
            print(f"updated {page.relative_to(ROOT)}")
        return 0
    if args.command == "execute":
        return execute_one(args.source, args.target)
    # a partial run renders the chapters it did not execute without their outputs, whose
    # glued numbers are then missing: only a full run is rendered strictly
    report = run(args.out.resolve(), jobs=args.jobs, only=args.only,
                 do_render=not args.no_render, strict=not args.only)
    slowest = max(report["chapters"], key=lambda n: n["seconds"], default=None)
    print(f"Executed in {report['execute_seconds']} s"
          + (f"; slowest chapter {slowest['slug']} {slowest['seconds']} s" if slowest else ""))
    problems = failures(report)
    for line in problems:
        print(line, file=sys.stderr)
    if args.publish and not problems:
        html = args.out / "_build" / "html"
        staging = args.publish.with_name(args.publish.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(html, staging)
        old = args.publish.with_name(args.publish.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if args.publish.exists():
            args.publish.rename(old)
        staging.rename(args.publish)
        shutil.rmtree(old, ignore_errors=True)
        print(f"The book is in {args.publish}/index.html")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
