"""Every app the book serves, and how to build it for a test with its real dependencies.

An entry names the app as a chapter serves it (``lab.serve("module:factory", ...)``) and
builds the environment the chapter passes: model files exported with labsupport.models,
a real redis-server (labsupport.redis), SQLite files in a temp folder, and upstream apps
(built here too, served with ``lab.serve`` in thread mode). The env keys are the chapter's
own; test_fuzz checks that every ``os.environ["KEY"]`` a module reads is supplied.

Each upstream is wrapped so the test sees what it answered: a proxy's 502/503 is the
chapter's designed answer only when the upstream it names really failed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

import labsupport as lab
from labsupport import models

_ids = itertools.count()


# --------------------------------------------------------------------------- models


class ModelShop:
    """Small models for the apps, exported once per test session into ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _export(self, name: str, model: Any, data: models.Dataset, **extra: Any) -> Path:
        path = self.folder / f"{name}.onnx"
        manifest = models.export_model(model, path, data=data, name=name, version="1")
        if extra:
            manifest.update(extra)
            models.manifest_path(path).write_text(json.dumps(manifest, indent=1))
        return path

    @cached_property
    def iris_data(self) -> models.Dataset:
        return models.iris()

    @cached_property
    def synth(self) -> models.Dataset:
        return models.synth3(n_train=600, n_test=50)

    @cached_property
    def iris(self) -> Path:
        return self._export("iris", models.iris_svc(self.iris_data), self.iris_data)

    @cached_property
    def wine(self) -> Path:
        data = models.wine()
        return self._export("wine", models.fast_logreg(data), data)

    @cached_property
    def knn(self) -> Path:
        """32 features, the heavy model's kind, kept small."""
        return self._export("knn", models.heavy_knn(300, self.synth), self.synth)

    @cached_property
    def logreg32(self) -> Path:
        return self._export("logreg32", models.fast_logreg(self.synth), self.synth)

    @cached_property
    def segment(self) -> Path:
        """32 DWH features -> segment, trained on the DWH's feature version "1"."""
        return self._export("segment", models.fast_logreg(self.synth), self.synth,
                            features_version="1")

    def binary(self, name: str, X: np.ndarray, y: np.ndarray, classes: list[str]) -> Path:
        path = self.folder / f"{name}.onnx"
        if not path.exists():
            iris = self.iris_data
            data = models.Dataset.train_only(name, X, y, iris.feature_names, classes, iris.units)
            self._export(name, models.fast_logreg(data), data)
        return path

    def detector(self, species: str) -> Path:
        """One iris species (1) against the rest (0), as microservice-horizontal trains."""
        iris = self.iris_data
        index = [str(s) for s in iris.target_names].index(species)
        return self.binary(species, iris.X_train, iris.y_train == index, ["rest", species])

    def stage(self, stage: str) -> Path:
        """microservice-vertical's gate, router and specialist."""
        iris = self.iris_data
        if stage == "gate":
            rng = np.random.default_rng(0)
            outliers = rng.uniform(0, 2 * iris.X_train.max(axis=0), iris.X_train.shape)
            X = np.vstack([iris.X_train, outliers])
            y = np.r_[np.zeros(len(iris.X_train)), np.ones(len(outliers))]
            return self.binary("gate", X, y, ["inlier", "outlier"])
        if stage == "router":
            return self.binary("router", iris.X_train, iris.y_train == 0, ["other", "setosa"])
        pair = iris.y_train > 0
        return self.binary("specialist", iris.X_train[pair], iris.y_train[pair] - 1,
                           ["versicolor", "virginica"])

    @cached_property
    def prep_params(self) -> Path:
        """prep-pred's preprocessing parameters, for small 4x4 images."""
        path = self.folder / "prep-standard-v1.json"
        path.write_text(json.dumps({"version": "standard-v1", "size": 4,
                                    "shift": [120.0, 110.0, 100.0], "scale": [60.0, 60.0, 60.0]}))
        return path

    @cached_property
    def patch_model(self) -> Path:
        """prep-pred's model: 4x4x3 normalised pixels -> 4 classes, with the manifest
        fields the chapter writes (classes, preprocessing version)."""
        import hashlib

        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 48)).astype(np.float32)
        y = np.arange(200) % 4
        blob = models.to_onnx_bytes(LogisticRegression(max_iter=200).fit(X, y), 48)
        path = self.folder / "patch-v1.onnx"
        path.write_bytes(blob)
        manifest = {"name": "patch", "version": "1", "sha256": hashlib.sha256(blob).hexdigest(),
                    "classes": ["china-left", "china-right", "flower-left", "flower-right"],
                    "preprocessing": {"version": "standard-v1", "size": 4}}
        models.manifest_path(path).write_text(json.dumps(manifest, indent=1))
        return path


# --------------------------------------------------------------------------- building apps


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` set while a module is imported and its factory runs (both read it)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def import_pattern_module(path: Path) -> Any:
    """A fresh import of an extracted module file (each build gets its own copy, so state
    and import-time env reads do not leak between tests). Its folder is importable while
    it loads, as ``uvicorn --app-dir`` makes it: a module may import a sibling."""
    name = f"_pattern_{path.stem}_{next(_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


class Built:
    """An ASGI app created on its first call (a lifespan or request) by ``create``."""

    def __init__(self, create: Callable[[], Any], env: dict[str, str]):
        self.create, self.env, self.app = create, env, None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = self.create()
        await self.app(scope, receive, send)


class UpstreamLog:
    """Pure ASGI wrapper: records ``(name, status)`` of every answer an upstream gives to a
    caller still waiting for it (a proxy past its deadline has hung up: no one hears that)."""

    def __init__(self, app: Any, name: str, log: list[tuple[str, int]]):
        self.app, self.name, self.log = app, name, log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hung_up = False

        async def watch() -> dict:
            nonlocal hung_up
            message = await receive()
            hung_up = hung_up or message["type"] == "http.disconnect"
            return message

        async def record(message: dict) -> None:
            if message["type"] == "http.response.start" and not hung_up:
                self.log.append((self.name, message["status"]))
            await send(message)

        await self.app(scope, watch, record)


class Context:
    """What one test builds: redis servers, upstream apps, files. ``close()`` stops all."""

    def __init__(self, modules_dir: Path, tmp: Path, shop: ModelShop):
        self.modules_dir, self.tmp, self.shop = Path(modules_dir), Path(tmp), shop
        self.stack = ExitStack()
        self.upstream_log: list[tuple[str, int]] = []

    def close(self) -> None:
        self.stack.close()

    def redis(self) -> str:
        from labsupport.redis import redis_server

        server = redis_server(name=f"fuzz-redis-{next(_ids)}")
        self.stack.callback(server.stop)
        return server.url

    def module_path(self, notebook: str, module: str) -> Path:
        return self.modules_dir / notebook / f"{module}.py"

    def build(self, app: LabApp) -> Built:
        """The app with its dependencies running; its factory runs on the first ASGI
        call, in the server's event-loop thread, as ``uvicorn --factory`` runs it."""
        env = app.env(self)

        def create() -> Any:
            with environ(env):
                if app.notebook == "labsupport":
                    module = importlib.import_module(app.module)
                else:
                    module = import_pattern_module(self.module_path(app.notebook, app.module))
                return getattr(module, app.factory)()

        return Built(create, env)

    def upstream(self, key: str, name: str) -> str:
        """Build the registry's app ``key`` and serve it on 127.0.0.1 (thread mode, its
        answers recorded under ``name``); returns its URL."""
        built = self.build(REGISTRY[key])
        server = lab.serve(UpstreamLog(built, name, self.upstream_log), mode="thread",
                           name=f"fuzz-{name}-{next(_ids)}")
        self.stack.callback(server.stop)
        return server.url

    def sqlite(self, name: str, script: str, rows: dict[str, list[tuple]]) -> Path:
        path = self.tmp / f"{name}-{next(_ids)}.sqlite"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executescript(script)
            for table, values in rows.items():
                marks = ",".join("?" * len(values[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
        return path


# --------------------------------------------------------------------------- the registry


def upstream_failed(log: list[tuple[str, int]], name: str, refusals: tuple[int, ...] = ()) -> bool:
    """The upstream ``name`` really failed during this case: it gave no answer at all, or
    a 5xx, or one of ``refusals`` (an answer the chapter turns into a 502 by design)."""
    answers = [status for upstream, status in log if upstream == name]
    return not answers or any(s >= 500 or s in refusals for s in answers)


Designed = Callable[[int, Any, list[tuple[str, int]]], bool]


@dataclass(frozen=True)
class LabApp:
    """One app as a chapter serves it, and the env to build it with."""

    notebook: str  # the chapter's slug ("serving/web-single"), or "labsupport"
    module: str
    factory: str
    env: Callable[[Context], dict[str, str]]
    # (status, JSON body, upstream answers during the case) -> a 5xx the chapter designs
    designed_5xx: Designed | None = field(default=None)
    # operation label -> a body of feature rows that reaches the model: its width, plus
    # the path parameters and headers the call needs ({"width": 4, "headers": {...}})
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""
    known_bug: str = ""  # reported, in a file these tests do not own: a strict xfail

    @property
    def key(self) -> str:
        return f"{self.notebook}:{self.module}:{self.factory}"


def _proxy_502(upstreams: dict[str, tuple[str, ...]], refusals: tuple[int, ...] = ()) -> Designed:
    """A proxy's 502 (504 past its deadline) that names an upstream, only when that
    upstream really failed. ``upstreams``: name -> words naming it in the body, besides
    ``upstream.<name>`` (labsupport.proxy's ``field``)."""
    def designed(status: int, body: Any, log: list) -> bool:
        text = json.dumps(body)
        return status in (502, 504) and any(
            any(w in text for w in (f"upstream.{name}", *words))
            and upstream_failed(log, name, refusals) for name, words in upstreams.items())
    return designed


_model_server_failed = _proxy_502({"model-server": ("model server",)})


def _breaker_fallback(status: int, body: Any, log: list) -> bool:
    # the breaker's documented answer: 503 with the fallback labels and the reason, when
    # the breaker is open or full, or the model server failed this call
    fallback = status == 503 and isinstance(body, dict) and body.get("fallback") is True
    return (fallback and (body.get("reason") in ("open", "shed", "half-open")
                          or upstream_failed(log, "model-server"))
            or _model_server_failed(status, body, log))


def _fanout_503(status: int, body: Any, log: list) -> bool:
    # no detector answered within the client's timeout_ms, or every one failed
    return status == 503 and body == {"detail": "no detector answered"}


def _lookup_db(ctx: Context) -> dict[str, str]:
    db = ctx.sqlite("predictions", "CREATE TABLE predictions (item_id INTEGER PRIMARY KEY, "
                    "label INTEGER); CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);",
                    {"predictions": [(i, i % 3) for i in range(100)],
                     "meta": [("model", "kNN 30k")]})
    return {"PREDICTIONS_DB": str(db)}


def _dwh(ctx: Context) -> dict[str, str]:
    rng = np.random.default_rng(0)
    events = [(int(rng.integers(0, 20)), int(rng.integers(0, 90)), int(rng.integers(0, 8)),
               float(np.round(rng.lognormal(3, 0.8), 2))) for _ in range(400)]
    db = ctx.sqlite("dwh", "CREATE TABLE events (user_id INTEGER, day INTEGER, "
                    "category INTEGER, amount REAL)", {"events": events})
    return {"DWH_PATH": str(db)}


def _training_config(ctx: Context) -> dict[str, str]:
    """anti-training-code-in-serving's one config file: the model and the training DWH."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    dwh = ctx.sqlite("training-dwh", "CREATE TABLE flowers (sepal_length REAL, sepal_width "
                     "REAL, petal_length REAL, petal_width REAL, species INTEGER)",
                     {"flowers": [(*map(float, row), int(label))
                                  for row, label in zip(iris.data, iris.target, strict=True)]})
    config = ctx.tmp / f"config-{next(_ids)}.json"
    config.write_text(json.dumps({"model_path": str(ctx.shop.iris), "dwh_path": str(dwh),
                                  "dwh_user": "trainer", "train_threads": 8}))
    return {"CONFIG_PATH": str(config)}


def _card_server(ctx: Context) -> dict[str, str]:
    # anti-nobody-knows: the iris model, a one-class outlier detector and the model card
    # (the manifest plus owner); the contract on, so the unit check is fuzzed too
    from skl2onnx import to_onnx
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    iris = ctx.shop.iris_data
    detector = ctx.tmp / f"detector-{next(_ids)}.onnx"
    fitted = make_pipeline(StandardScaler(), OneClassSVM(nu=0.1)).fit(iris.X_train)
    detector.write_bytes(to_onnx(fitted, iris.X_train[:1]).SerializeToString())
    card = json.loads(models.manifest_path(ctx.shop.iris).read_text())
    card.update(owner="fuzz", version=str(card["version"]))
    card_path = ctx.tmp / f"card-{next(_ids)}.json"
    card_path.write_text(json.dumps(card))
    return {"MODEL_PATH": str(ctx.shop.iris), "DETECTOR_PATH": str(detector),
            "CARD_PATH": str(card_path), "CONTRACT": "on"}


def _template(ctx: Context) -> dict[str, str]:
    # the spec names its model relative to itself: put the iris model beside iris.yaml
    folder = ctx.module_path("serving/template", "x").parent
    for suffix in ("", ".json"):
        source = Path(str(ctx.shop.iris) + suffix)
        (folder / f"iris.onnx{suffix}").write_bytes(source.read_bytes())
    return {"SPEC_PATH": str(folder / "iris.yaml")}


def _monitored(ctx: Context) -> dict[str, str]:
    """prediction-monitoring's server: the iris model, a OneClassSVM outlier detector (no
    manifest: skl2onnx gives it no probability output to configure), a fresh log."""
    from skl2onnx import to_onnx
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    path = ctx.shop.folder / "outlier.onnx"
    if not path.exists():
        X = ctx.shop.iris_data.X_train
        path.write_bytes(to_onnx(make_pipeline(StandardScaler(), OneClassSVM(nu=0.1)).fit(X),
                                 X[:1]).SerializeToString())
    return {"MODEL_PATH": str(ctx.shop.iris), "OUTLIER_PATH": str(path),
            "LOG_PATH": str(ctx.tmp / f"monitored-{next(_ids)}.sqlite")}


def _labels_api(ctx: Context) -> dict[str, str]:
    path = ctx.tmp / f"labels-{next(_ids)}.json"
    path.write_text(json.dumps([{"flower": i, "species": ("setosa", "versicolor")[i % 2]}
                                for i in range(120)]))
    return {"LABELS_PATH": str(path), "API_SECRET": "fuzz-secret"}


def _discovery(ctx: Context) -> dict[str, str]:
    """training-to-serving's Redis discovery hash holding one live member: the iris server."""
    import redis

    url = ctx.redis()
    store = redis.Redis.from_url(url)
    card = {"url": _serve_model(ctx, ctx.shop.iris, "model-v1"), "version": "1", "model": "iris"}
    store.hset("discovery:members", "model-v1", json.dumps(card))
    store.set("discovery:lease:model-v1", 1)  # no TTL: live for the whole test
    store.close()
    return {"REDIS_URL": url}


def _approved_registry(ctx: Context) -> dict[str, str]:
    """train-then-serve's registry: iris@champion is the iris model, reviewed and approved."""
    from mlflow import MlflowClient

    from labsupport import modelload

    folder = ctx.tmp / f"registry-{next(_ids)}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    folder.mkdir()
    version = modelload.register(ctx.shop.iris, "iris", tracking_uri=uri, alias="champion",
                                 artifact_location=(folder / "artifacts").as_uri())
    for key, value in {"review": "approved", "state": "approved"}.items():
        MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(
            "iris", version, key, value)
    return {"MLFLOW_TRACKING_URI": uri, "MODEL_NAME": "iris", "MODEL_ALIAS": "champion",
            "MODEL_CACHE": str(folder / "cache")}


def _no_approved_model_503(status: int, body: Any, log: list) -> bool:
    # train-then-serve's gated server before its approved model is loaded
    return (status == 503 and isinstance(body, dict)
            and body.get("detail") == "no approved model loaded yet")


def _model_registry(ctx: Context) -> dict[str, str]:
    """An MLflow registry (an SQLite store) whose iris@champion is the iris model."""
    from labsupport import modelload

    folder = ctx.tmp / f"registry-{next(_ids)}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    folder.mkdir()
    modelload.register(ctx.shop.iris, "iris", tracking_uri=uri, alias="champion",
                       artifact_location=(folder / "artifacts").as_uri())
    return {"MLFLOW_TRACKING_URI": uri, "MODEL_NAME": "iris", "MODEL_ALIAS": "champion",
            "MODEL_CACHE": str(folder / "cache")}


def _not_ready_503(status: int, body: Any, log: list) -> bool:
    # model-load's /predict and /ready before its model is loaded
    return status == 503 and isinstance(body, dict) and body.get("detail") == "model not loaded yet"


def _apps() -> list[LabApp]:
    iris_rows = {"POST /predict": {"width": 4}}
    knn_rows = {"POST /predict": {"width": 32}}
    prep_header = {"x-prep-version": "standard-v1"}
    return [
        # a logistic regression: extreme rows overflow it (anti-online-bigsize serves one)
        LabApp("labsupport", "labsupport.apps", "create_model_app",
               lambda c: {"MODEL_PATH": str(c.shop.wine)}, rows={"POST /predict": {"width": 13}}),
        LabApp("serving/web-single", "web_single_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris)}),
        LabApp("serving/web-single", "levers_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris)}),
        LabApp("serving/anti-all-in-one", "model_server", "create_app",
               lambda c: {"MODELS": f"iris={c.shop.iris},wine={c.shop.wine}"},
               rows={"POST /predict/{name}": {"width": 13, "path_parameters": {"name": "wine"}}}),
        LabApp("serving/anti-online-bigsize", "lookup_app", "create_app", _lookup_db),
        LabApp("serving/asynchronous", "async_front", "create_app",
               lambda c: {"REDIS_URL": c.redis()}),
        LabApp("serving/circuit-break", "one_cpu_model", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.knn)}, rows=knn_rows),
        LabApp("serving/circuit-break", "breaker_proxy", "create_app",
               lambda c: {"BACKEND_URL": c.upstream("serving/circuit-break:one_cpu_model:"
                                                    "create_app", "model-server"),
                          "BREAKER": "on", "FALLBACK_LABEL": "0", "DEADLINE_MS": "5000"},
               _breaker_fallback, knn_rows, "deadline 5 s: a busy test machine is no failure"),
        LabApp("serving/data-cache", "dwh_app", "create_app", _dwh),
        LabApp("serving/data-cache", "data_cache_predictor", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.segment), "REDIS_URL": c.redis(),
                          "DWH_URL": c.upstream("serving/data-cache:dwh_app:create_app", "dwh"),
                          "CACHE": "on"},
               _proxy_502({"dwh": ("DWH",)})),
        LabApp("serving/microservice-horizontal", "fanout_proxy", "create_app",
               lambda c: {"DETECTORS": ",".join(
                   f"{s}={_serve_model(c, c.shop.detector(s), s)}"
                   for s in ("setosa", "versicolor", "virginica"))},
               _fanout_503),
        LabApp("serving/microservice-vertical", "chain_proxy", "create_app",
               lambda c: {f"{s.upper()}_URL": _serve_model(c, c.shop.stage(s), s)
                          for s in ("gate", "router", "specialist")},
               _proxy_502({s: (f"stage '{s}'",) for s in ("gate", "router", "specialist")})),
        LabApp("serving/multi-stage", "multistage_front", "create_app",
               lambda c: {"REDIS_URL": c.redis(), "LIGHT_MODEL": str(c.shop.logreg32)}),
        LabApp("serving/prediction-cache", "prediction_cache_proxy", "create_app",
               lambda c: {"REDIS_URL": c.redis(), "KEY_HAS_VERSION": "1",
                          "BACKEND_URL": _serve_model(c, c.shop.knn, "model-server")},
               _model_server_failed, knn_rows),
        LabApp("serving/prep-pred", "prep_pred_apps", "create_pred_app",
               lambda c: {"MODEL_PATH": str(c.shop.patch_model)},
               rows={"POST /predict": {"width": 48, "headers": prep_header}}),
        LabApp("serving/prep-pred", "prep_pred_apps", "create_prep_app",
               lambda c: {"PREP_PATH": str(c.shop.prep_params),
                          "PRED_URL": c.upstream("serving/prep-pred:prep_pred_apps:"
                                                 "create_pred_app", "pred")},
               _proxy_502({"pred": ("pred_status",)}, refusals=(409,))),
        LabApp("serving/prep-pred", "prep_pred_apps", "create_single_app",
               lambda c: {"PREP_PATH": str(c.shop.prep_params),
                          "MODEL_PATH": str(c.shop.patch_model)}),
        LabApp("serving/template", "service_template", "create_app", _template),
        LabApp("training/anti-too-many-pipes", "labels_api", "create_app", _labels_api),
        LabApp("qa/online-ab", "ab_proxy", "create_app",
               lambda c: {"A_URL": _serve_model(c, c.shop.iris, "model-A"),
                          "B_URL": _serve_model(c, c.shop.iris, "model-B"),
                          "SPLIT_MODE": "sticky", "WEIGHT_B": "50",
                          "LOG_DB": str(c.tmp / f"ab-{next(_ids)}.sqlite")},
               _proxy_502({"model-A": (), "model-B": ()}),
               rows={"POST /predict": {"width": 4, "body": {"user_id": 7}}}),
        LabApp("qa/anti-offline-only", "threshold_server", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.detector("versicolor")), "THRESHOLD": "0.5"},
               rows=iris_rows),
        LabApp("qa/shadow-ab", "candidate_app", "create_app",
               # NICE=0: the factory renices its process, here the test's own
               lambda c: {"MODEL_PATH": str(c.shop.iris), "NICE": "0"}, rows=iris_rows),
        LabApp("qa/shadow-ab", "shadow_proxy", "create_app",
               lambda c: {"PRIMARY_URL": _serve_model(c, c.shop.iris, "primary"),
                          "CANDIDATES": json.dumps({"candidate": c.upstream(
                              "qa/shadow-ab:candidate_app:create_app", "candidate")}),
                          "LOG_PATH": str(c.tmp / f"shadow-{next(_ids)}.sqlite")},
               _proxy_502({"primary": ()}), rows=iris_rows),
        LabApp("training/anti-training-code-in-serving", "fat_server", "create_app",
               _training_config, rows=iris_rows),
        LabApp("training/anti-training-code-in-serving", "lean_server", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris)}, rows=iris_rows),
        # a 502 only when the model's manifest cannot be read; a failed or late model
        # call is the chapter's fallback (a 200)
        LabApp("operation/parameter-based-serving", "param_proxy", "create_app",
               lambda c: {"MODEL_URL": _serve_model(c, c.shop.iris, "model-server"),
                          "REDIS_URL": c.redis()},
               _proxy_502({"model-server": ()}), rows=iris_rows),
        LabApp("operation/condition-based-serving", "router_proxy", "create_app",
               lambda c: {"ROUTES": ",".join(f"{r}={_serve_model(c, c.shop.iris, f'model-{r}')}"
                                             for r in ("a", "b"))},
               _proxy_502({"model-a": (), "model-b": ()}),
               rows={"POST /predict": {"width": 4, "headers": {"x-region": "a"}}}),
        LabApp("operation/model-in-image", "image_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris), "IMAGE_DIGEST": "sha256:" + "0" * 64}),
        LabApp("operation/model-load", "model_load_app", "create_app", _model_registry,
               _not_ready_503),
        LabApp("operation/data-model-versioning", "version_registry", "create_app",
               lambda c: {"REGISTRY_DIR": str(c.tmp / f"registry-{next(_ids)}")}),
        LabApp("operation/anti-nobody-knows", "card_server", "create_app", _card_server),
        LabApp("operation/prediction-monitoring", "monitored_app", "create_app", _monitored),
        LabApp("operation/prediction-log", "predlog_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris), "LOG_MODE": "queue",
                          "REDIS_URL": c.redis(),
                          "LOG_DB": str(c.tmp / f"predlog-{next(_ids)}.sqlite")}),
        LabApp("operation/anti-no-logging", "incident_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris), "PREDICTION_LOG": "on",
                          "REDIS_URL": c.redis()}),
        # without REDIS_URL the member announces nothing (a cluster's Service discovers it)
        LabApp("lifecycle/training-to-serving", "member_app", "create_app",
               lambda c: {"MODEL_PATH": str(c.shop.iris), "MEMBER_ID": "model-v1"},
               rows=iris_rows),
        LabApp("lifecycle/train-then-serve", "gated_server", "create_app", _approved_registry,
               _no_approved_model_503, rows=iris_rows),
        LabApp("lifecycle/train-then-serve", "ab_proxy", "create_app",
               lambda c: {"CHAMPION_URL": _serve_model(c, c.shop.iris, "champion"),
                          "CANDIDATE_URL": _serve_model(c, c.shop.iris, "candidate"),
                          "REDIS_URL": c.redis(), "CANDIDATE_PERCENT": "50"},
               _proxy_502({"champion": (), "candidate": ()}), rows=iris_rows),
        LabApp("lifecycle/training-to-serving", "horizontal_proxy", "create_app", _discovery,
               _proxy_502({"model-v1": ()}),
               rows={"POST /predict": {"width": 4}, "POST /fanout": {"width": 4}}),
    ]


def _serve_model(ctx: Context, path: Path, name: str) -> str:
    """labsupport's model server for ``path``, as an upstream named ``name``."""
    from labsupport.apps import create_model_app

    server = lab.serve(UpstreamLog(create_model_app(str(path)), name, ctx.upstream_log),
                       mode="thread", name=f"fuzz-{name}-{next(_ids)}")
    ctx.stack.callback(server.stop)
    return server.url


REGISTRY: dict[str, LabApp] = {app.key: app for app in _apps()}
