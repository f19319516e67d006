"""Model lifecycle costs: checksums, feature hashing and validation, registry loads, Feast reads.

    .venv/bin/python bench/registry.py

Each row times an abflow operation and a baseline doing the bare minimum of the same work,
in the same run, interleaved (best of N rounds), and prints the ratio:

* artifact_checksum over 64 MiB in 8 files vs one SHA-256 per file over ``read_bytes``;
* feature_vector_hash of 30 floats vs SHA-256 over ``orjson.dumps`` of the same dict;
* InlineFeatures.get (validate 30 features, fill defaults, hash) vs ``[float(x[n]) ...]``;
* resolve_model of an alias (registry lookups, checksum, load) vs ``joblib.load``;
* FeastFeatures.get_many for 48 users vs Feast's own ``get_online_features().to_dict()``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROUNDS = 5


def _best(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved(
    ours: Callable[[], Any], base: Callable[[], Any], number: int
) -> tuple[float, float]:
    """Best per-call time of each, alternating rounds so both see the same machine load."""
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(_best(ours, number))
        b.append(_best(base, number))
    return min(a), min(b)


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:9.2f} ms"
    return f"{seconds * 1e6:9.1f} µs"


def main() -> None:
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    rng = np.random.default_rng(20261126)
    tmp = Path(tempfile.mkdtemp(prefix="abflow-bench-registry-"))
    rows: list[tuple[str, float, str, float]] = []
    notes: list[str] = []
    try:
        from abflow.features import FeatureSpec, InlineFeatures, feature_vector_hash
        from abflow.registry import artifact_checksum

        folder = tmp / "artifacts"
        folder.mkdir()
        for index in range(8):
            (folder / f"part{index}.bin").write_bytes(rng.bytes(8 << 20))
        files = sorted(folder.iterdir())
        ours, base = interleaved(
            lambda: artifact_checksum(folder),
            lambda: [hashlib.sha256(f.read_bytes()).digest() for f in files],
            number=1,
        )
        rows.append(("artifact_checksum, 64 MiB in 8 files", ours, "sha256 per file", base))

        names = [f"f{i:02d}" for i in range(30)]
        values = [float(v) for v in rng.normal(size=30)]
        request = dict(zip(names, values, strict=True))
        ours, base = interleaved(
            lambda: feature_vector_hash(names, values),
            lambda: hashlib.sha256(orjson.dumps(request)).hexdigest(),
            number=5000,
        )
        rows.append(("feature_vector_hash, 30 floats", ours, "sha256(orjson.dumps)", base))

        source = InlineFeatures([FeatureSpec(n, "float", default=0.0) for n in names])
        ours, base = interleaved(
            lambda: source.get(request), lambda: [float(request[n]) for n in names], number=5000
        )
        rows.append(("InlineFeatures.get, 30 features", ours, "[float(x[n]) for n]", base))

        rows.append(_registry_row(tmp, notes))
        feast_row = _feast_row(tmp, notes)
        if feast_row is not None:
            rows.append(feast_row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'abflow':40} {'time':>12}   {'baseline':24} {'time':>12} {'ratio':>7}")
    for name, ours_s, base_name, base_s in rows:
        print(
            f"{name:40} {_fmt(ours_s):>12}   {base_name:24} {_fmt(base_s):>12} {ours_s / base_s:7.2f}"
        )
    for note in notes:
        print(note)


def _registry_row(tmp: Path, notes: list[str]) -> tuple[str, float, str, float]:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y)
    joblib.dump(model, tmp / "forest.joblib")
    uri = f"sqlite:///{tmp / 'registry' / 'mlflow.db'}"
    start = time.perf_counter()
    from abflow.registry import register_model, resolve_model

    register_model("bench", model, alias="champion", tracking_uri=uri)
    notes.append(
        f"first register_model in a new registry (MLflow import, schema creation): "
        f"{time.perf_counter() - start:.1f} s"
    )
    ours, base = interleaved(
        lambda: resolve_model("models:/bench@champion", tracking_uri=uri),
        lambda: joblib.load(tmp / "forest.joblib"),
        number=3,
    )
    return ("resolve_model, alias, 50-tree forest", ours, "joblib.load", base)


def _feast_row(tmp: Path, notes: list[str]) -> tuple[str, float, str, float] | None:
    try:
        start = time.perf_counter()
        import feast  # noqa: F401
    except ImportError:
        notes.append("Feast not installed: FeastFeatures row skipped")
        return None
    notes.append(f"import feast: {time.perf_counter() - start:.1f} s")
    import runpy

    from abflow.features import FeastFeatures

    example = Path(__file__).resolve().parents[1] / "examples" / "feast"
    repo = tmp / "feast"
    shutil.copytree(example, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    runpy.run_path(str(repo / "make_data.py"), run_name="bench")["build"](repo)
    refs = ["user_stats:txn_count_7d", "user_stats:avg_amount_7d", "user_stats:country"]
    source = FeastFeatures(repo, refs, entity_key="user_id")
    requests = [{"user_id": int(u)} for u in range(1, 49)]
    rows = [{"user_id": int(u)} for u in range(1, 49)]
    store = source._store
    ours, base = interleaved(
        lambda: source.get_many(requests),
        lambda: store.get_online_features(features=refs, entity_rows=rows).to_dict(),
        number=20,
    )
    return ("FeastFeatures.get_many, 48 users", ours, "Feast get_online_features", base)


if __name__ == "__main__":
    main()
