"""Seeded datasets, the book's models, ONNX export with a manifest, and an ORT wrapper.

Only data that ships inside a package or is generated here is used: nothing is
downloaded. Two models carry most chapters (calibrated in the spec):

* ``iris_svc()``: StandardScaler + calibrated SVC on iris, tiny and fast (~10 us);
* ``heavy_knn(n_ref)``: k-nearest neighbours on ``synth3``. Its cost grows with the
  number of reference rows (1k ~1-3 ms, 5k ~7 ms, 10k ~14 ms a row on one core), so a
  chapter can make the model's cost visible next to the ~1 ms HTTP round trip.
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0

# skl2onnx still reads SVC.probA_/probB_, which scikit-learn 1.9 deprecates.
warnings.filterwarnings("ignore", message=r".*prob[AB]_.*", category=FutureWarning)


class ModelFileNotFoundError(FileNotFoundError):
    """The model file a server or chapter asked for does not exist."""


@dataclass
class Dataset:
    """A seeded train/test split with names, as the chapters use it."""

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    units: dict[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @classmethod
    def train_only(cls, name: str, X: np.ndarray, y: np.ndarray, feature_names: list[str],
                   target_names: list[str], units: dict[str, str] | None = None) -> Dataset:
        """Training rows without a test split: what :func:`export_model` needs for a model
        trained on data a chapter built itself. Introduced in
        *serving/microservice-vertical*."""
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)
        return cls(name, X, X[:0], y, y[:0], list(feature_names), list(target_names),
                   units or {})

    def sha256(self) -> str:
        """Fingerprint of the training data, recorded in model manifests."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.X_train, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.y_train, dtype=np.int64).tobytes())
        return digest.hexdigest()


def _split(name: str, X: np.ndarray, y: np.ndarray, feature_names: list[str],
           target_names: list[str], test_size: float | int, seed: int,
           units: dict[str, str] | None = None) -> Dataset:
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y.astype(np.int64), test_size=test_size, random_state=seed,
        stratify=y)
    return Dataset(name, X_train, X_test, y_train, y_test, feature_names, target_names,
                   units or {})


def iris(test_size: float = 0.25, seed: int = SEED) -> Dataset:
    """Iris (150 x 4, shipped with scikit-learn), measurements in centimetres."""
    from sklearn.datasets import load_iris

    raw = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return _split("iris", raw.data, raw.target, names, list(raw.target_names), test_size, seed,
                  {n: "cm" for n in names})


def wine(test_size: float = 0.25, seed: int = SEED) -> Dataset:
    """Wine (178 x 13, shipped with scikit-learn): chemical analysis of three cultivars."""
    from sklearn.datasets import load_wine

    raw = load_wine()
    return _split("wine", raw.data, raw.target, list(raw.feature_names),
                  [str(t) for t in raw.target_names], test_size, seed)


def resample(X: np.ndarray, y: np.ndarray, n: int, noise: float = 0.15,
             seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows drawn from ``(X, y)`` with Gaussian noise of scale ``noise`` added: a
    denser training set, e.g. to give a kNN on iris thousands of reference rows (and a
    real cost). Seeded. Introduced in *serving/microservice-vertical*."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(X), n)
    noisy = np.asarray(X)[pick] + rng.normal(0, noise, (n, np.asarray(X).shape[1]))
    return noisy.astype(np.float32), np.asarray(y)[pick]


def synth3(n_train: int = 6000, n_test: int = 2000, seed: int = SEED) -> Dataset:
    """Generated 3-class data with 32 features where kNN clearly beats a linear model.

    Introduced in *serving/synchronous*. Logistic regression scores about 0.66 on it,
    kNN(5) 0.85-0.9 depending on the number of reference rows.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n_train + n_test, n_features=32, n_informative=16,
                               n_classes=3, n_clusters_per_class=3, random_state=seed)
    names = [f"x{i:02d}" for i in range(X.shape[1])]
    return _split("synth3", X, y, names, ["a", "b", "c"], n_test, seed)


def iris_svc(data: Dataset | None = None) -> Any:
    """StandardScaler + SVC with calibrated probabilities, fitted on iris train."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    data = data or iris()
    model = make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False))
    return model.fit(data.X_train, data.y_train)


def fast_logreg(data: Dataset) -> Any:
    """A fast, weaker model: StandardScaler + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        data.X_train, data.y_train)


def heavy_knn(n_ref: int, data: Dataset | None = None, k: int = 5) -> Any:
    """kNN on the first ``n_ref`` training rows: a model whose cost you can dial.

    Introduced in *serving/synchronous*. Each prediction computes ``n_ref`` distances.
    """
    from sklearn.neighbors import KNeighborsClassifier

    data = data or synth3(n_train=max(n_ref, 6000))
    if n_ref > len(data.X_train):
        raise ValueError(f"n_ref={n_ref} exceeds the {len(data.X_train)} training rows")
    return KNeighborsClassifier(k).fit(data.X_train[:n_ref], data.y_train[:n_ref])


def to_onnx_bytes(model: Any, n_features: int) -> bytes:
    """Convert a fitted scikit-learn classifier to ONNX with a plain probability tensor.

    The graph has one float input of shape ``[None, n_features]`` and two outputs,
    ``label`` and ``probabilities``.
    """
    from skl2onnx import to_onnx

    sample = np.zeros((1, n_features), dtype=np.float32)
    onx = to_onnx(model, sample, options={"zipmap": False})
    return onx.SerializeToString()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            out[pkg] = package_version(pkg)
        except Exception:
            out[pkg] = "unknown"
    return out


def export_model(model: Any, path: str | Path, *, data: Dataset, name: str,
                 version: str = "1", description: str = "") -> dict:
    """Export ``model`` to ONNX at ``path`` with a JSON manifest beside it.

    The manifest (``<path>.json``) records the name, version, sha256 of the ONNX file,
    package versions, the training data's fingerprint, and the input schema (feature
    names, units, observed ranges) and classes, so a server can describe and check what
    it serves. Introduced in *serving/web-single*. Returns the manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = to_onnx_bytes(model, data.n_features)
    path.write_bytes(blob)
    low, high = data.X_train.min(axis=0), data.X_train.max(axis=0)
    manifest = {
        "name": name,
        "version": str(version),
        "description": description,
        "file": path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimator": type(model).__name__ if not hasattr(model, "steps")
        else " + ".join(type(step).__name__ for _, step in model.steps),
        "packages": _versions(),
        "training_data": {"name": data.name, "rows": int(len(data.X_train)),
                          "sha256": data.sha256()},
        "inputs": [
            {"name": feature, "dtype": "float32", "unit": data.units.get(feature, ""),
             "min": round(float(lo), 4), "max": round(float(hi), 4)}
            for feature, lo, hi in zip(data.feature_names, low, high, strict=True)
        ],
        "classes": list(data.target_names),
    }
    manifest_path(path).write_text(json.dumps(manifest, indent=2))
    return manifest


def manifest_path(model_path: str | Path) -> Path:
    """Where the manifest of a model file lives: ``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


class OnnxModel:
    """An onnxruntime session on one thread, with the manifest beside the file.

    ``OnnxModel(path)`` checks that the file exists and, when a manifest is there, that
    its sha256 matches. ``predict`` and ``predict_proba`` take a 2-D float array.
    """

    def __init__(self, source: str | Path | bytes, threads: int = 1):
        import onnxruntime as ort

        self.manifest: dict = {}
        if isinstance(source, bytes):
            blob = source
            self.path = None
        else:
            self.path = Path(source)
            if not self.path.is_file():
                raise ModelFileNotFoundError(
                    f"model file {self.path} does not exist. Export one first, e.g. "
                    f"labsupport.models.export_model(model, '{self.path}', data=..., name=...)."
                )
            blob = self.path.read_bytes()
            mpath = manifest_path(self.path)
            if mpath.is_file():
                self.manifest = json.loads(mpath.read_text())
                actual = hashlib.sha256(blob).hexdigest()
                if self.manifest.get("sha256") not in (None, actual):
                    raise ValueError(f"{self.path} does not match its manifest: sha256 "
                                     f"{actual[:12]} != {self.manifest['sha256'][:12]}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.n_features = int(first.shape[1])

    @property
    def name(self) -> str:
        return self.manifest.get("name", "model")

    @property
    def version(self) -> str:
        return self.manifest.get("version", "0")

    @property
    def classes(self) -> list[str]:
        return self.manifest.get("classes", [])

    def run(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities for the rows of ``X``."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features per row, got {X.shape[1]}")
        labels, probabilities = self.session.run(None, {self.input_name: X})
        return labels, probabilities

    def predict(self, X: Any) -> np.ndarray:
        return self.run(X)[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.run(X)[1]
