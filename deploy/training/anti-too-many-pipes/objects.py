"""training/anti-too-many-pipes: the work-around's pipeline as one Job, whose only
credential is the one store's URL, read from a Secret.

The Secret is referenced, not created: the data platform owns it (an external secret
operator or the platform's vault fills it), and a Secret's value has no place in the
book's repository. The complex pipeline would need four such credentials.
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "training/anti-too-many-pipes"
STORE_SECRET = "iris-store-reader"  # the platform's Secret: key "url", the store's URL


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    k8s.writefile(SLUG, "simple_pipeline.py")  # the module the Job runs: fails if renamed
    box = k8s.container("train", k8s.image(SLUG, "train"), ["python", "simple_pipeline.py"],
                        health=None, cpu="500m", memory="512Mi")
    box["env"] = [{"name": "STORE_URL", "valueFrom": {"secretKeyRef": {
        "name": STORE_SECRET, "key": "url"}}}]
    return [k8s.job(SLUG, "train", box, retries=2, deadline_s=1800,
                    lab='simple_pipeline.build(IrisStore(f"sqlite:///{STORE}")) run by dag.run',
                    does=f"Runs the 5-step pipeline; the store's URL comes from Secret "
                         f"{STORE_SECRET} (referenced, owned by the data platform).")]
