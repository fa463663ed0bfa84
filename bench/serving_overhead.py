"""How close does the book's model server come to the speed of its HTTP stack?

Three arms, each one uvicorn process started the same way (``lab.serve``, process mode,
same flags), measured in one run, interleaved (a b c, a b c, ...):

* (a) the lab's model server, ``labsupport.apps.create_model_app``, serving the iris SVC
  pipeline in ONNX (validation, model, manifest, timing headers);
* (b) the same ONNX model behind a minimal Starlette endpoint: parse the JSON, run the
  model, answer. The limit for this model in Python on this stack;
* (c) a bare Starlette endpoint answering a constant body: the limit of the stack.

The load generator is ``wrk`` (a C program; ``apt-get install wrk``) with a Lua script
for the POST body. Without it the benchmark says so and falls back to several Python
generator processes, which are slower and share the two cores with the server. Before
the arms, it measures the generator's own ceiling against the bare endpoint, and how
busy the generator and the server were: a server below ~90% of a core there means the
generator, not the server, set the pace.

Per arm it prints the median over rounds of requests per second, p50 and p99 latency,
and the server's CPU time per request (``psutil`` CPU times of the server process
before and after, divided by the requests it answered: a figure that does not depend
on how fast the generator is). Then the ratios a/b, a/c, b/c against the target
(a >= 0.7x b in req/s, a within 2x of b in CPU per request).

Run with ``make bench`` or ``python bench/serving_overhead.py`` (``--help`` for the
knobs; ``--chapter`` adds the web-single chapter's server as a fourth arm). This is a
benchmark, not a test: it exits 0 unless ``--check`` is given and a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import labsupport as lab  # noqa: E402
from labsupport import models  # noqa: E402

TARGET_RPS_RATIO = 0.7  # lab model server / minimal same-model endpoint
TARGET_CPU_RATIO = 2.0

MINIMAL_APP = '''
import json
import os

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from labsupport.models import OnnxModel

model = OnnxModel(os.environ["MODEL_PATH"])


async def predict(request):
    rows = json.loads(await request.body())["rows"]
    labels, probabilities = model.run(rows)
    body = {"labels": labels.tolist(), "classes": model.classes,
            "probabilities": probabilities.tolist(), "model": model.name,
            "version": model.version}
    return Response(json.dumps(body), media_type="application/json")


async def health(request):
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/health", health)])
'''

BARE_APP = '''
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = (b'{"labels":[1],"classes":["setosa","versicolor","virginica"],'
        b'"probabilities":[[0.01,0.91,0.08]],"model":"iris-svc","version":"1"}')


async def predict(request):
    return Response(BODY, media_type="application/json")


async def health(request):
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/health", health)])
'''


@dataclass
class Arm:
    key: str
    label: str
    server: lab.servers.Server
    body: bytes


@dataclass
class Run:
    requests: int
    seconds: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    generator_cpu_s: float
    report: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def chapter_app_source() -> str:
    """The web-single chapter's server module, exactly as the notebook writes it."""
    notebook = json.loads((ROOT / "notebooks/serving/web-single.ipynb").read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("%%writefile"):
            return source.split("\n", 1)[1]
    raise SystemExit("no %%writefile cell found in the web-single chapter")


# --- generator 1: wrk ------------------------------------------------------------------

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> tuple[int, float, int, float | None, float | None]:
    """(requests, seconds, errors, p50 ms, p99 ms) from ``wrk --latency`` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    if not done:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    requests, seconds = int(done.group(1)), _ms(done.group(2) + done.group(3)) / 1e3
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    pct = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.MULTILINE))
    return (requests, seconds, errors, _ms(pct["50"]) if "50" in pct else None,
            _ms(pct["99"]) if "99" in pct else None)


def run_wrk(url: str, body: bytes, seconds: int, threads: int, connections: int,
            script_dir: Path) -> Run:
    script = script_dir / f"post-{abs(hash(body))}.lua"
    if not script.exists():
        script.write_text('wrk.method = "POST"\n'
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = {json.dumps(body.decode())}\n")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 30,
        check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests, elapsed, errors, p50, p99 = parse_wrk(done.stdout)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return Run(requests, elapsed, errors, p50, p99, cpu, done.stdout)


# --- generator 2: Python processes (fallback) ------------------------------------------

async def _connection_loop(port: int, request: bytes, deadline: float,
                           latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 2"):
                errors[0] += 1
    finally:
        writer.close()


def _generator_process(port: int, request: bytes, connections: int, seconds: float,
                       out: multiprocessing.Queue) -> None:
    latencies: list[float] = []
    errors = [0]

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_connection_loop(port, request, deadline, latencies, errors)
                               for _ in range(connections)))

    started = time.perf_counter()
    asyncio.run(main())
    out.put((latencies, errors[0], time.perf_counter() - started))


def run_python_generators(url: str, body: bytes, seconds: float, processes: int,
                          connections: int) -> Run:
    port = int(url.split(":")[2].split("/")[0])
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    per_process = max(1, connections // processes)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = [context.Process(target=_generator_process,
                               args=(port, request, per_process, seconds, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies = sorted(x for result in results for x in result[0])
    errors = sum(result[1] for result in results)
    elapsed = max(result[2] for result in results)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 \
            if latencies else None

    return Run(len(latencies), elapsed, errors, pct(0.50), pct(0.99), cpu)


# --- measuring -------------------------------------------------------------------------

def server_cpu_s(pid: int) -> float:
    process = psutil.Process(pid)
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        total += sum(child.cpu_times()[:2])
    return total


def measure(arm: Arm, args: argparse.Namespace, scratch: Path) -> dict:
    cpu_before = server_cpu_s(arm.server.pid)
    if args.generator == "wrk":
        run = run_wrk(arm.server.url + "/predict", arm.body, args.seconds, args.threads,
                      args.connections, scratch)
    else:
        run = run_python_generators(arm.server.url + "/predict", arm.body, args.seconds,
                                    args.processes, args.connections)
    server_cpu = server_cpu_s(arm.server.pid) - cpu_before
    if run.errors:
        raise SystemExit(f"{arm.label}: {run.errors} failed requests of {run.requests}\n"
                         f"{run.report}")
    return {"rps": run.rps, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms,
            "cpu_ms_per_request": server_cpu * 1e3 / max(run.requests, 1),
            "server_busy": server_cpu / run.seconds,
            "generator_busy": run.generator_cpu_s / run.seconds}


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def stack() -> str:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {package_version('uvicorn')} (http: {http}, loop: {loop})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per round and arm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--processes", type=int, default=2,
                        help="generator processes when wrk is missing")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--chapter", action="store_true",
                        help="also measure the web-single chapter's server (a fourth arm)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the model server misses a target")
    args = parser.parse_args()
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "python"
    if args.generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH: apt-get install wrk (or brew install wrk)")
    if args.generator == "python":
        print("wrk not found: install wrk for honest numbers (apt-get install wrk). "
              f"Falling back to {args.processes} Python generator processes, which share "
              "the cores with the server and may be the bottleneck.\n")
    if args.seconds * args.rounds * (4 if args.chapter else 3) > 240:
        raise SystemExit("keep a run under 4 minutes: fewer --seconds or --rounds")

    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    (scratch / "minimal_app.py").write_text(MINIMAL_APP)
    (scratch / "bare_app.py").write_text(BARE_APP)
    (scratch / "web_single_app.py").write_text(chapter_app_source())
    iris = models.iris()
    model_path = scratch / "iris_svc.onnx"
    models.export_model(models.iris_svc(iris), model_path, data=iris, name="iris-svc")
    rows_body = json.dumps({"rows": [iris.X_test[0].astype(float).tolist()]}).encode()
    flower_body = json.dumps(dict(zip(iris.feature_names, map(float, iris.X_test[0]),
                                      strict=True))).encode()
    env = {"MODEL_PATH": str(model_path)}

    try:
        arms = [
            Arm("a", "(a) lab model server", lab.serve(
                "labsupport.apps:create_model_app", factory=True, mode="process", env=env,
                name="bench-model"), rows_body),
            Arm("b", "(b) minimal, same model", lab.serve(
                "minimal_app:app", mode="process", app_dir=scratch, env=env,
                name="bench-minimal"), rows_body),
            Arm("c", "(c) bare endpoint", lab.serve(
                "bare_app:app", mode="process", app_dir=scratch, name="bench-bare"),
                rows_body),
        ]
        if args.chapter:
            arms.append(Arm("d", "(d) web-single chapter", lab.serve(
                "web_single_app:create_app", factory=True, mode="process", app_dir=scratch,
                env=env, name="bench-chapter"), flower_body))
        for arm in arms:  # each answers correctly before it is timed
            check = lab.load.closed_loop(arm.server.url + "/predict",
                                         [json.loads(arm.body)], n=50)
            if any(not record.ok for record in check):
                raise SystemExit(f"{arm.label} does not answer 2xx to the benchmark body")

        print(f"server stack: {stack()}, one process per arm, same flags; "
              f"generator: {args.generator}")
        ceiling = measure(arms[2], argparse.Namespace(**{**vars(args), "seconds": 3}),
                          scratch)
        capacity = args.threads if args.generator == "wrk" else args.processes
        if ceiling["server_busy"] >= 0.9:
            verdict = "the server, not the generator, sets the pace"
        elif ceiling["generator_busy"] >= 0.9 * capacity:
            verdict = "the generator is saturated: it, not the server, is the bottleneck"
        else:
            verdict = "neither is saturated: other work on the machine took the CPU"
        print(f"generator ceiling vs the bare endpoint: {ceiling['rps']:,.0f} req/s; "
              f"server busy {ceiling['server_busy']:.0%} of a core, generator "
              f"{ceiling['generator_busy']:.0%}: {verdict}\n")

        rounds = lab.interleave({arm.key: (lambda a=arm: measure(a, args, scratch))
                                 for arm in arms}, rounds=args.rounds)
    finally:
        lab.stop_all()

    med = {key: {field: median([r[field] for r in runs]) for field in runs[0]}
           for key, runs in rounds.items()}
    print(f"{args.rounds} interleaved rounds of {args.seconds:g} s, {args.connections} "
          f"connections, medians:")
    print(f"{'arm':28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} "
          f"{'server busy':>11}")
    for arm in arms:
        m = med[arm.key]
        p50 = f"{m['p50_ms']:7.2f}" if m["p50_ms"] is not None else f"{'-':>7}"
        p99 = f"{m['p99_ms']:7.2f}" if m["p99_ms"] is not None else f"{'-':>7}"
        print(f"{arm.label:28} {m['rps']:8,.0f} {p50} {p99} {m['cpu_ms_per_request']:10.3f} "
              f"{m['server_busy']:11.0%}")
    a, b, c = med["a"], med["b"], med["c"]
    print()
    print(f"{'ratio':28} {'req/s':>8} {'CPU/req':>8}")
    for name, x, y in (("a/b model server / minimal", a, b), ("a/c model server / bare", a, c),
                       ("b/c minimal / bare", b, c)):
        cpu = x["cpu_ms_per_request"] / y["cpu_ms_per_request"]
        print(f"{name:28} {x['rps'] / y['rps']:7.2f}x {cpu:7.2f}x")
    if "d" in med:
        d = med["d"]
        print(f"{'d/b chapter / minimal':28} {d['rps'] / b['rps']:7.2f}x "
              f"{d['cpu_ms_per_request'] / b['cpu_ms_per_request']:7.2f}x")
    per_round = [ra["rps"] / rb["rps"] for ra, rb in zip(rounds["a"], rounds["b"], strict=True)]
    print(f"{'a/b req/s per round':28} " + ", ".join(f"{r:.2f}x" for r in per_round))
    rps_ok = a["rps"] / b["rps"] >= TARGET_RPS_RATIO
    cpu_ok = a["cpu_ms_per_request"] / b["cpu_ms_per_request"] <= TARGET_CPU_RATIO
    print(f"\ntarget a/b req/s >= {TARGET_RPS_RATIO}x: {'met' if rps_ok else 'MISSED'}; "
          f"a/b CPU per request <= {TARGET_CPU_RATIO}x: {'met' if cpu_ok else 'MISSED'}")
    if a["rps"] >= 0.9 * ceiling["rps"]:
        print("note: the model server ran near the generator's ceiling; its req/s is a "
              "lower bound, trust the CPU per request")
    return 1 if args.check and not (rps_ok and cpu_ok) else 0


if __name__ == "__main__":
    raise SystemExit(main())
