"""Small fixes to the HTML the theme and its extensions write, found by the browser check
(tests/test_browser.py): each one was a JavaScript error on every page."""

from __future__ import annotations

from typing import Any


def _default_mode(app: Any, config: Any) -> None:
    # the theme's page template reads `default_mode`, which nothing sets: the page then
    # starts in mode "" and the theme logs an error
    config.html_context.setdefault("default_mode", "auto")


def _without_thebe(app: Any) -> None:
    # The book launches no live kernels in the page (launch_buttons.thebe is false), yet
    # sphinx-thebe, which Jupyter Book always loads, writes its inline config twice into
    # every page; declared twice, its `const THEBE_JS_URL` is a SyntaxError. Unhook it.
    for event in ("env-before-read-docs", "doctree-resolved", "html-page-context"):
        listeners = app.events.listeners.get(event, [])
        listeners[:] = [x for x in listeners
                        if not getattr(x.handler, "__module__", "").startswith("sphinx_thebe")]


def _root_favicon(app: Any, exception: Exception | None) -> None:
    # the root index.html only redirects and names no icon: browsers then ask /favicon.ico
    import shutil
    from pathlib import Path

    icon = app.config.html_favicon
    if exception is None and app.builder.format == "html" and icon:
        shutil.copyfile(Path(app.srcdir) / icon, Path(app.outdir) / "favicon.ico")


def setup(app: Any) -> dict:
    app.connect("builder-inited", _without_thebe)
    app.connect("build-finished", _root_favicon)
    app.connect("config-inited", _default_mode)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
