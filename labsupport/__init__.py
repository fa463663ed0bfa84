"""labsupport: the plumbing shared by the chapters of *ML system design patterns, executable*.

Modules, each named for what it gives:

* ``servers``: run ASGI apps and child processes on 127.0.0.1, stop them for sure;
* ``redis``: a real redis-server on a free port;
* ``models``: seeded datasets, the book's models, ONNX export with a manifest;
* ``apps``: a reusable model server (FastAPI + onnxruntime);
* ``load``: closed- and open-loop load generators and a percentile summary;
* ``plots`` and ``diagrams``: shared figures and generated architecture diagrams;
* ``check``: interleaved measurements, claims that show their numbers, glued numbers;
* ``proxy``: the scaffold of a proxy app (pooled client, deadlines, 502/504 naming the
  upstream); ``timeline``: background samplers, clocks, drains;
* ``manifests``: each chapter's Kubernetes objects, rendered from what the lab ran;
* ``predlog``: the prediction log (SQLite, written off the request path); ``logqueue``:
  the same log through a Redis stream (a consumer group, nothing lost when a consumer
  dies); ``abtest``: the statistics of an online test (sample size, two-proportion test,
  bootstrap, peeking);
* ``modelload``: a model fetched from the registry by alias, with a compatibility check;
  ``monitor``: rules and drift tests over windows of traffic;
* ``tracking``: MLflow runs and registry in the chapter's folder, or a tracking server;
* ``toc`` and ``summaries``: the book's one list of chapters, and what the summary pages
  collect from them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# One BLAS/OpenMP thread per process: servers, models and the load generator share two
# cores, and oversubscribing them makes every timing noisy. Set before numpy loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import check, servers  # noqa: E402
from .check import claim, glue, interleave, ratio  # noqa: E402
from .servers import free_port, running, serve, start_process, stop_all  # noqa: E402


def __getattr__(name: str) -> Any:
    # Every other module loads on first use (``lab.plots``...): a server child process that
    # imports ``labsupport.apps`` should not pay for matplotlib or pandas at start-up.
    if not name.startswith("_") and (Path(__file__).parent / f"{name}.py").exists():
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "abtest", "apps", "check", "diagrams", "load", "logqueue", "manifests", "modelload",
    "models", "monitor", "plots", "predlog", "proxy", "redis", "servers", "summaries",
    "timeline", "toc", "tracking",
    "claim", "glue", "interleave", "ratio", "free_port", "running", "serve", "start_process",
    "stop_all", "setup", "workdir", "chapter_slug",
]


def workdir(chapter: str) -> Path:
    """A scratch folder for one chapter's generated files (app modules, models, SQLite),
    outside the repository. One per kernel process, so two runs of the same chapter at
    once (a reader and the book build, say) never overwrite each other's files;
    re-running a chapter in the same kernel reuses it. Folders of kernels that have
    exited are removed."""
    root = Path(tempfile.gettempdir()) / "mlsdp-lab"
    stem = chapter.replace("/", "-")
    for old in root.glob(f"{stem}-pid*"):
        pid = old.name.rsplit("-pid", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"{stem}-pid{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def chapter_slug(notebook: str | os.PathLike[str] | None = None) -> str | None:
    """The chapter's slug (``"serving/web-single"``), from the notebook's own path: the
    one that ``$MLSDP_NOTEBOOK`` names (the book build sets it), else the one JupyterLab
    (``$JPY_SESSION_NAME``) or VS Code reports for this kernel. None when the kernel
    cannot tell (a plain IPython, Colab), and then no claims are recorded."""
    candidates = [notebook, os.environ.get("MLSDP_NOTEBOOK"), os.environ.get("JPY_SESSION_NAME")]
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
        candidates.append(shell.user_ns.get("__vsc_ipynb_file__"))
    except NameError:
        pass
    for candidate in candidates:
        if candidate:
            parts = Path(candidate).with_suffix("").parts
            if "notebooks" in parts[:-2]:
                index = len(parts) - 1 - parts[::-1].index("notebooks")
                return "/".join(parts[index + 1:])
    return None


def setup(chapter: str | None = None) -> Path:
    """The first cell of every chapter: quiet warnings, readable figures, and the
    chapter's scratch folder (returned). Stops servers left by a previous run, and
    starts recording the chapter's claims for the summary pages. The chapter is found
    from the notebook's path (:func:`chapter_slug`); pass it only to override that."""
    import warnings

    import matplotlib

    warnings.filterwarnings("ignore", message=r".*prob[AB]_.*")
    matplotlib.rcParams.update({"figure.dpi": 110, "figure.figsize": (6.4, 3.6),
                                "axes.spines.top": False, "axes.spines.right": False})
    stop_all()
    chapter = chapter or chapter_slug() or "unnamed-chapter"
    check.start_chapter(chapter)
    return workdir(chapter)
