"""Vendor onnxruntime-web into the book, for the in-browser part of *serving/edge-prediction*.

The book is built with Python only, so the JavaScript runtime is committed, not fetched
at build time. This script is how it got there and how to update it (it needs npm,
which reaches the npm registry):

    python tools/vendor_onnxruntime_web.py            # fetch VERSION, write the files
    python tools/vendor_onnxruntime_web.py --check    # the committed files are intact

What is kept, in ``book/_static/onnxruntime-web/`` (Sphinx copies it to ``_static/``):

* ``ort.wasm.min.js``: the CPU (WebAssembly) build of the JavaScript API, nothing for
  WebGL, WebGPU or WebNN;
* ``ort-wasm-simd-threaded.mjs``: the loader of the WebAssembly module;
* ``ort-wasm-simd-threaded.wasm.gz``: the runtime itself, gzipped (14 MB to 3.7 MB); the
  page inflates it with the browser's own ``DecompressionStream`` and hands the bytes to
  ``ort.env.wasm.wasmBinary``, so no web server needs to be configured for it;
* ``LICENSE`` and ``ThirdPartyNotices.txt`` of ONNX Runtime (MIT; the notices list what
  is compiled into the binary), taken from the onnxruntime Python package installed here;
* ``SOURCE.json``: the package, its version, the registry's integrity hash of the
  tarball, and the sha256 of every file kept.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "_static" / "onnxruntime-web"
KEPT = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs")
WASM = "ort-wasm-simd-threaded.wasm"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(out: Path = OUT) -> dict:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed to fetch onnxruntime-web (the book itself builds without it)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--json",
                                 "--pack-destination", tmp],
                                check=True, capture_output=True, text=True, timeout=600)
        info = json.loads(packed.stdout)[0]
        with tarfile.open(Path(tmp) / info["filename"]) as tar:
            for name in (*KEPT, WASM):
                member = tar.extractfile(f"package/dist/{name}")
                assert member is not None, name
                data = member.read()
                if name == WASM:
                    # mtime=0: the same input gives the same bytes, so re-vendoring is a no-op
                    (out / f"{name}.gz").write_bytes(gzip.compress(data, 9, mtime=0))
                else:
                    (out / name).write_bytes(data)
    import onnxruntime

    package_dir = Path(onnxruntime.__file__).parent
    for name in ("LICENSE", "ThirdPartyNotices.txt"):
        shutil.copyfile(package_dir / name, out / name)
    files = sorted(p.name for p in out.iterdir() if p.name != "SOURCE.json")
    source = {"package": PACKAGE, "version": VERSION, "integrity": info["integrity"],
              "licence": "MIT (LICENSE); third-party notices in ThirdPartyNotices.txt",
              "licence_files_from": f"the onnxruntime {onnxruntime.__version__} Python package",
              "files": {name: sha256(out / name) for name in files}}
    (out / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
    return source


def check(out: Path = OUT) -> list[str]:
    """Problems with the committed files: missing, changed, or not listed."""
    source = json.loads((out / "SOURCE.json").read_text())
    problems = [f"{name}: missing" for name in source["files"] if not (out / name).exists()]
    problems += [f"{name}: sha256 differs from SOURCE.json"
                 for name, digest in source["files"].items()
                 if (out / name).exists() and sha256(out / name) != digest]
    problems += [f"{p.name}: not listed in SOURCE.json" for p in out.iterdir()
                 if p.name != "SOURCE.json" and p.name not in source["files"]]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files")
    args = parser.parse_args()
    if args.check:
        problems = check()
        print("\n".join(problems) or f"{PACKAGE} files intact")
        sys.exit(1 if problems else 0)
    source = fetch()
    size = sum((OUT / name).stat().st_size for name in source["files"])
    print(f"{PACKAGE} {VERSION}: {len(source['files'])} files, {size / 1e6:.1f} MB in {OUT}")


if __name__ == "__main__":
    main()
