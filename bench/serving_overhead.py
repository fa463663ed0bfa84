"""How much does the web-single model server cost next to a bare endpoint?

Serves, under the same uvicorn setup (one process each, same flags) and driven by the
same closed-loop load generator:

* the web-single chapter's model server, taken verbatim from the notebook's
  ``%%writefile`` cell, with the chapter's iris model (validation, preprocessing,
  onnxruntime, timing headers);
* a bare Starlette endpoint that returns a constant JSON body.

Rounds alternate between the two (A B A B ...) and the medians are reported: requests
per second, p50 latency, and the server's own CPU time per request (from the kernel's
accounting of the server process, which does not depend on how fast the load
generator is). Run with ``make bench`` or ``python bench/serving_overhead.py``.
This is a benchmark, not a test: it prints numbers and the ratio against the 0.7x
target, and exits 0 either way unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import labsupport as lab  # noqa: E402
from labsupport import models  # noqa: E402

BARE_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

BODY = {"label": "versicolor", "probabilities": {"setosa": 0.01, "versicolor": 0.91,
        "virginica": 0.08}, "model_version": "1"}


async def predict(request):
    return JSONResponse(BODY)


async def health(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/health", health)])
'''


def chapter_app_source() -> str:
    """The web-single chapter's server module, exactly as the notebook writes it."""
    notebook = json.loads((ROOT / "notebooks/serving/web-single.ipynb").read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("%%writefile"):
            return source.split("\n", 1)[1]
    raise SystemExit("no %%writefile cell found in the web-single chapter")


def measure(server: lab.servers.Server, payload: dict, n: int, concurrency: int) -> dict:
    process = psutil.Process(server.pid)
    cpu_before = sum(process.cpu_times()[:2])
    records = lab.load.closed_loop(server.url + "/predict", [payload], n=n,
                                   concurrency=concurrency)
    cpu_after = sum(process.cpu_times()[:2])
    summary = lab.load.summarize(records)
    if summary["error_rate"] > 0:
        raise SystemExit(f"{server.name}: {summary['error_rate']:.1%} errors")
    return {"rps": summary["throughput_rps"], "p50_ms": summary["p50_ms"],
            "server_cpu_ms_per_request": (cpu_after - cpu_before) * 1e3 / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--check", action="store_true", help="exit 1 below the 0.7x target")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    (work / "web_single_app.py").write_text(chapter_app_source())
    (work / "bare_app.py").write_text(BARE_APP)
    iris = models.iris()
    model_path = work / "iris_svc.onnx"
    models.export_model(models.iris_svc(iris), model_path, data=iris, name="iris-svc")
    flower = dict(zip(iris.feature_names, map(float, iris.X_test[0]), strict=True))

    try:
        servers = {
            "model server (web-single)": lab.serve(
                "web_single_app:create_app", factory=True, mode="process", app_dir=work,
                env={"MODEL_PATH": str(model_path)}, name="bench-model"),
            "bare Starlette endpoint": lab.serve(
                "bare_app:app", mode="process", app_dir=work, name="bench-bare"),
        }
        for server in servers.values():  # warm-up
            lab.load.closed_loop(server.url + "/predict", [flower], n=300,
                                 concurrency=args.concurrency)
        rounds = lab.interleave(
            {name: (lambda s=server: measure(s, flower, args.requests, args.concurrency))
             for name, server in servers.items()}, rounds=args.rounds)
    finally:
        lab.stop_all()

    medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for name, runs in rounds.items()}
    print(f"{args.rounds} interleaved rounds x {args.requests} requests, "
          f"closed loop, concurrency {args.concurrency}, one uvicorn process each")
    print(f"{'':28} {'requests/s':>11} {'p50 ms':>8} {'server CPU ms/req':>18}")
    for name, m in medians.items():
        print(f"{name:28} {m['rps']:11.0f} {m['p50_ms']:8.2f} "
              f"{m['server_cpu_ms_per_request']:18.3f}")
    model, bare = medians.values()
    ratio = model["rps"] / bare["rps"]
    cpu_ratio = model["server_cpu_ms_per_request"] / bare["server_cpu_ms_per_request"]
    print(f"model server / bare endpoint, requests/s:        {ratio:.2f}x (target >= 0.7x)")
    print(f"model server / bare endpoint, CPU per request:   {cpu_ratio:.2f}x "
          "(independent of the load generator's speed)")
    return 1 if args.check and ratio < 0.7 else 0


if __name__ == "__main__":
    raise SystemExit(main())
