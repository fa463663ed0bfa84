"""Every lab API, fuzzed from its own OpenAPI schema (schemathesis + hypothesis).

Each app the book serves (tests/labapps.py) is built with its real dependencies and called
in-process over ASGI with generated requests: valid ones (positive), invalid ones
(negative), and for apps that take feature ``rows``, rows of the model's width with
extreme floats, so the model itself is reached. The promise checked: no answer >= 500,
except one the chapter designs and documents, and then only when the upstream it names
really failed; a 2xx matches the declared response schema; a 422 names the field.

Bounded: ``MLSDP_FUZZ_EXAMPLES`` cases per operation and generation mode (default 25),
derandomized so a run is repeatable (``MLSDP_FUZZ_SEED=<int>`` explores other cases).
``MLSDP_FUZZ_REPORT=<file>`` appends one JSON line per app: operations, cases sent, 5xx.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import labapps
import patternmodules
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

# huge JSON floats become inf in float32: the apps must cope, numpy says so each time
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
EXAMPLES = int(os.environ.get("MLSDP_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("MLSDP_FUZZ_SEED")
SETTINGS = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), database=None,
                    derandomize=SEED is None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate], print_blob=False)
# float32 values (what the models compute in) from the tiniest to the largest: out-of-range
# floats are the positive and negative cases' job, these must reach the model
F32_MAX = 3.4028234663852886e38
# what a failed schemathesis check raises: a group of AssertionErrors (a BaseExceptionGroup)
FAILED = (AssertionError, BaseExceptionGroup)
EXTREME = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.0, -0.0, 1e-45, F32_MAX, -F32_MAX]))


@dataclass
class Tally:
    """What one app was sent and how it answered."""

    key: str
    operations: list[str] = field(default_factory=list)
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    designed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, case: Any, message: str) -> None:
        if len(self.failures) < 8:  # enough to fix it; the count says how many more
            self.failures.append(f"{case.operation.label} {_request(case)}: {message}")
        else:
            self.failures.append("")


def _request(case: Any) -> str:
    parts = [f"{k}={v!r}" for k, v in (("path", case.path_parameters), ("query", case.query),
                                        ("headers", case.headers)) if v]
    body = getattr(case, "body", None)
    if body is not None and not type(body).__name__ == "NotSet":
        parts.append(f"body={json.dumps(body, default=repr)[:300]}")
    return " ".join(parts)


def _first_line(error: BaseException) -> str:
    errors = getattr(error, "exceptions", None) or [error]
    return "; ".join(str(e).strip().splitlines()[0] for e in errors if str(e).strip())


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:300]


def check(tally: Tally, entry: labapps.LabApp, ctx: labapps.Context, case: Any) -> None:
    """Send one case and judge the answer."""
    ctx.upstream_log.clear()
    tally.cases += 1
    try:
        response = case.call()
    except Exception as error:  # raised through the app: a served app would answer 500
        tally.statuses[500] = tally.statuses.get(500, 0) + 1
        tally.fail(case, f"raised {type(error).__name__}: {error}"[:400])
        return
    status, body, upstream = response.status_code, _json(response), list(ctx.upstream_log)
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status >= 500:
        if entry.designed_5xx and entry.designed_5xx(status, body, upstream):
            tally.designed += 1
        else:
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FAILED as error:
                tally.fail(case, f"{status} {json.dumps(body)[:300]} ({_first_line(error)}; "
                                 f"upstream answers {upstream})")
    for name, answer in upstream:
        if answer >= 500:
            tally.fail(case, f"upstream {name} answered {answer} to the app")
    if 200 <= status < 300:
        try:
            case.validate_response(response, checks=[response_schema_conformance])
        except FAILED as error:
            tally.fail(case, f"{status} does not match the response schema: "
                             f"{_first_line(error)} {json.dumps(body)[:200]}")
    if status == 422:
        fields = body.get("detail") if isinstance(body, dict) else None
        if not (isinstance(fields, list) and fields
                and all(isinstance(d, dict) and d.get("field") for d in fields)):
            tally.fail(case, f"422 without detail[].field: {json.dumps(body)[:200]}")


def run_cases(strategy: Any, tally: Tally, entry: labapps.LabApp, ctx: labapps.Context) -> None:
    @SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        check(tally, entry, ctx, case)

    if SEED is not None:
        run = seed(int(SEED))(run)
    try:
        run()
    except Unsatisfiable:
        pass  # nothing to generate (an operation without parameters has no negative case)


def wait_ready(app: Any, timeout: float = 15.0) -> None:
    """Like lab.serve: fuzz only once /health says ok (a proxy may wait for its upstream)."""
    deadline = time.monotonic() + timeout
    with asgi.get_client(app) as client:
        while True:
            status = client.get(f"http://{asgi.HOST}/health").status_code
            if status == 200:
                return
            assert time.monotonic() < deadline, f"/health still answers {status}"
            time.sleep(0.05)


def env_read(path: Path, factory: str) -> set[str]:
    """The ``os.environ["KEY"]`` a module reads at import time or in ``factory``: the
    registry must supply each, or the test would build another app than the chapter."""
    if not path.exists():  # labsupport's own app
        return set()
    tree = ast.parse(path.read_text())
    scopes = [node for node in tree.body if not isinstance(
        node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or getattr(
        node, "name", None) == factory]
    return {node.slice.value for scope in scopes for node in ast.walk(scope)
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)}


def fuzz(entry: labapps.LabApp, ctx: labapps.Context) -> Tally:
    tally = Tally(entry.key)
    app = ctx.build(entry)
    required = env_read(ctx.module_path(entry.notebook, entry.module), entry.factory)
    assert required <= set(app.env), (
        f"{entry.key} reads {sorted(required - set(app.env))}: add them in tests/labapps.py")
    try:
        wait_ready(app)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            tally.operations.append(operation.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run_cases(operation.as_strategy(generation_mode=mode), tally, entry, ctx)
            fitted = dict(entry.rows.get(operation.label, {}))
            if fitted:  # rows of the model's width: the call reaches the model
                width, body = fitted.pop("width"), fitted.pop("body", {})
                rows = st.lists(st.lists(EXTREME, min_size=width, max_size=width),
                                min_size=1, max_size=4)
                run_cases(rows.map(lambda r, op=operation, kw=fitted, b=body: op.Case(
                    body={**b, "rows": r}, **kw)), tally, entry, ctx)
    finally:
        asgi.shutdown_lifespans()  # the app closes its clients before its upstreams stop
    return tally


# -------------------------------------------------------------------------------- tests


@pytest.fixture(scope="session")
def modules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pattern-modules")
    patternmodules.extract(out)
    return out


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> labapps.ModelShop:
    return labapps.ModelShop(tmp_path_factory.mktemp("fuzz-models"))


def _report(tally: Tally) -> None:
    path = os.environ.get("MLSDP_FUZZ_REPORT")
    if path:
        row = {"app": tally.key, "operations": tally.operations, "cases": tally.cases,
               "statuses": tally.statuses, "designed_5xx": tally.designed,
               "failures": len(tally.failures)}
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")


def _fuzz_test(entry: labapps.LabApp, modules_dir: Path, shop: labapps.ModelShop,
               tmp_path: Path) -> None:
    ctx = labapps.Context(modules_dir, tmp_path, shop)
    try:
        tally = fuzz(entry, ctx)
    finally:
        ctx.close()
    _report(tally)
    assert tally.cases >= EXAMPLES, f"only {tally.cases} cases were sent"
    shown = [f for f in tally.failures if f]
    assert not tally.failures, (
        f"{entry.key}: {len(tally.failures)} of {tally.cases} answers broke the promise "
        f"(statuses {tally.statuses}):\n" + "\n".join(shown))


# One test class per chapter: pytest-xdist's --dist loadscope then spreads the chapters
# over the workers instead of running the whole fuzz file on one.
def _chapter_class(notebook: str, entries: list[labapps.LabApp]) -> type:
    params = [pytest.param(e, id=f"{e.module}:{e.factory}", marks=[pytest.mark.xfail(
        strict=True, reason=e.known_bug)] if e.known_bug else []) for e in entries]

    @pytest.mark.parametrize("entry", params)
    def test_no_server_error(self, entry, modules_dir, shop, tmp_path) -> None:
        _fuzz_test(entry, modules_dir, shop, tmp_path)

    name = "TestFuzz" + "".join(w.title() for w in re.split(r"\W+", notebook.split("/")[-1]))
    return type(name, (), {"test_no_server_error": test_no_server_error,
                           "__doc__": f"The apps of {notebook}."})


_by_chapter: dict[str, list[labapps.LabApp]] = {}
for _entry in labapps.REGISTRY.values():
    _by_chapter.setdefault(_entry.notebook, []).append(_entry)
for _notebook, _entries in _by_chapter.items():
    _cls = _chapter_class(_notebook, _entries)
    globals()[_cls.__name__] = _cls


def _served_in_notebooks() -> set[str]:
    """``notebook:module:factory`` for every ``"module:factory"`` string in a chapter's code
    that names labsupport's app or a module the chapter writes (what lab.serve takes), and
    for the template's ``f"{template_module}:factory"``: every module with that factory."""
    served = set()
    for path in sorted(patternmodules.NOTEBOOKS.rglob("*.ipynb")):
        slug = path.relative_to(patternmodules.NOTEBOOKS).with_suffix("").as_posix()
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        written = {m.module: m for m in patternmodules.python_modules() if m.notebook == slug}
        for module, factory in re.findall(r'"([\w.]+):(\w+)"', source):
            if module == "labsupport.apps":
                served.add(f"labsupport:{module}:{factory}")
            elif module in written:
                served.add(f"{slug}:{module}:{factory}")
        for factory in re.findall(r'lab\.serve\(\s*f"\{\w+\}:(\w+)"', source):
            served.update(f"{slug}:{m.module}:{factory}" for m in written.values()
                          if f"def {factory}(" in m.source)
    return served


def test_every_served_app_is_fuzzed() -> None:
    served = _served_in_notebooks()
    assert len(served) >= 15, served  # the parser still finds the chapters' lab.serve calls
    missing = served - set(labapps.REGISTRY)
    assert not missing, f"served by a chapter, not in tests/labapps.py: {sorted(missing)}"
    stale = set(labapps.REGISTRY) - served
    assert not stale, f"in tests/labapps.py, served by no chapter: {sorted(stale)}"
