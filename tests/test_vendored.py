"""The vendored onnxruntime-web (book/_static/onnxruntime-web) is intact and licensed."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location(
    "vendor_ort", ROOT / "tools" / "vendor_onnxruntime_web.py")
assert spec is not None and spec.loader is not None
vendor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vendor)


def test_files_match_their_recorded_hashes() -> None:
    assert vendor.check() == []


def test_the_runtime_is_webassembly_and_its_licence_ships_with_it() -> None:
    wasm = gzip.decompress((vendor.OUT / f"{vendor.WASM}.gz").read_bytes())
    assert wasm[:4] == b"\0asm"
    assert "MIT License" in (vendor.OUT / "LICENSE").read_text()
    source = json.loads((vendor.OUT / "SOURCE.json").read_text())
    assert source["version"] == vendor.VERSION and source["package"] == "onnxruntime-web"
    assert f'"{vendor.VERSION}"' in (vendor.OUT / "ort.wasm.min.js").read_text()


def test_a_changed_file_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "ort"
    copy.mkdir()
    for item in vendor.OUT.iterdir():
        copy.joinpath(item.name).write_bytes(item.read_bytes())
    copy.joinpath("ort.wasm.min.js").write_text("// not the runtime\n")
    copy.joinpath("extra.js").write_text("")
    problems = vendor.check(copy)
    assert problems == ["ort.wasm.min.js: sha256 differs from SOURCE.json",
                        "extra.js: not listed in SOURCE.json"]
