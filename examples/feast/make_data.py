"""Build the example Feast repo: write the Parquet data, apply the definitions, materialise.

    python examples/feast/make_data.py [REPO_DIR]

The data is small and deterministic (seeded), so tests can check every value Feast returns.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

N_USERS = 50
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def make_frame(n_users: int = N_USERS, seed: int = 7) -> pd.DataFrame:
    """Two snapshots per user, a day apart: the online store must keep the newer one."""
    rng = np.random.default_rng(seed)
    frames = []
    for days_ago in (1, 0):
        frames.append(
            pd.DataFrame(
                {
                    "user_id": np.arange(1, n_users + 1, dtype=np.int64),
                    "txn_count_7d": rng.integers(0, 40, n_users).astype(np.int64),
                    "avg_amount_7d": np.round(rng.gamma(2.0, 30.0, n_users), 2),
                    "country": rng.choice(["DE", "FR", "US", "BR"], n_users),
                    "event_timestamp": AS_OF - timedelta(days=days_ago, hours=1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _definitions(repo: Path) -> list[object]:
    spec = importlib.util.spec_from_file_location("abflow_example_features", repo / "features.py")
    if spec is None or spec.loader is None:
        msg = f"cannot load {repo / 'features.py'}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.DEFINITIONS)


def build(repo: Path) -> pd.DataFrame:
    """Write the data, ``feast apply`` the definitions, materialise into the online store."""
    from feast import FeatureStore

    frame = make_frame()
    (repo / "data").mkdir(exist_ok=True)
    frame.to_parquet(repo / "data" / "user_stats.parquet", index=False)
    store = FeatureStore(repo_path=str(repo))
    store.apply(_definitions(repo))
    store.materialize(start_date=AS_OF - timedelta(days=30), end_date=AS_OF)
    return frame


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    rows = build(target)
    print(f"materialised {rows['user_id'].nunique()} users into {target / 'data'}")
