"""The pattern modules (``%%writefile {WORK}/name.py`` cells) are code: ruff-clean under the
repository's rules, importable, and defining what their chapter uses them for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import labapps
import patternmodules
import pytest

ROOT = patternmodules.ROOT
MODULES = patternmodules.python_modules()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pattern-modules")
    patternmodules.extract(out)
    return out


def test_every_chapter_module_is_found() -> None:
    # the extraction still sees the cells (a changed magic line would hide them all)
    assert len(MODULES) >= 19, [m.key for m in MODULES]


def test_ruff_clean(extracted: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"),
         "--no-cache", "--output-format", "concise", str(extracted)],
        capture_output=True, text=True, timeout=120)
    findings = result.stdout.replace(f"{extracted}/", "notebooks/").strip()
    assert result.returncode == 0, f"ruff findings in %%writefile cells:\n{findings}"


def _code(notebook: str) -> str:
    cells = json.loads((patternmodules.NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells
                     if c["cell_type"] == "code" and not "".join(c["source"]).startswith("%%"))


def uses(module: patternmodules.PatternModule) -> dict[str, list[str]]:
    """How the chapter uses the module, read from its other code cells."""
    code, name = _code(module.notebook), re.escape(module.module)
    served = re.findall(rf'lab\.serve\(\s*"{name}:(\w+)"', code)
    # an app spec kept in a variable or a table and handed to lab.serve later
    if "lab.serve(" in code:
        served += [f for f in re.findall(rf'"{name}:(\w+)"', code) if f not in served]
    # the template chapter serves f"{template_module}:create_app" for several modules
    for variable, factory in re.findall(r'lab\.serve\(\s*f"\{(\w+)\}:(\w+)"', code):
        if re.search(rf'\b{variable}\b.*"{name}"|"{name}".*\b{variable}\b', code) or \
                re.search(rf'\(\s*"{name}"', code):
            served.append(factory)
    return {
        "served": served,
        "script": re.findall(rf'sys\.executable,\s*str\(WORK\s*/\s*"({name}\.py)"\)', code),
        "imported": [n.strip() for names in re.findall(rf"from {name} import ([\w, ]+)", code)
                     for n in names.split(",")]
        + (re.findall(rf"\b{name}\.(\w+)", code) if re.search(rf"^import {name}\b", code, re.M)
           else []),
        "plugin": re.findall(rf'\["plugin"\]\s*=\s*"({name})"', code),
    }


@pytest.mark.parametrize("module", MODULES, ids=[m.key for m in MODULES])
def test_module_imports_and_defines_what_the_chapter_uses(module, extracted: Path) -> None:
    path = extracted / module.notebook / module.filename
    used = uses(module)
    assert any(used.values()), f"{module.key}: written, but the chapter never serves, runs " \
                               f"or imports it"
    if used["plugin"]:
        # a model's plugin runs inside the server that loads it, and may take it down (the
        # antipattern's point): import it in a child, where only a Python error counts
        child = subprocess.run([sys.executable, "-c", f"import {module.module}"], cwd=path.parent,
                               capture_output=True, text=True, timeout=60)
        assert "Traceback" not in child.stderr, child.stderr
        return
    loaded = labapps.import_pattern_module(path)
    for factory in used["served"]:
        assert callable(getattr(loaded, factory, None)), f"lab.serve names {factory}, undefined"
    for name in used["imported"]:
        assert hasattr(loaded, name), f"the chapter imports {name}, undefined"
    if used["script"]:
        assert callable(getattr(loaded, "main", None)), "a script the chapter runs needs main()"
        assert 'if __name__ == "__main__":' in module.source, "a script needs a __main__ guard"
