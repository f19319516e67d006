"""Every benchmark, one after the other, each with its default (short) settings.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--skip NAME ...]

Each script prints its own table (and its baseline, measured in the same run); this runner
only starts them in turn, prints how long each took, and exits non-zero if one failed. A
benchmark that needs a service which is not running here (Kafka) says so and is counted as
failed, not hidden.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = (
    "routing",
    "stats",
    "analysis",
    "store",
    "store_cost",
    "eventlog",
    "registry",
    "drift",
    "sampling",
    "gateway",
    "remote",
    "kafka",
    "warehouse",  # generates its events on disk first (about 100 s per 10M)
)
"""Script names (``bench/NAME.py``), cheapest first."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=None)
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[])
    args = parser.parse_args()
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    failed: list[str] = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            continue
        print(f"\n=== bench/{name}.py ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])
        print(f"=== bench/{name}.py: exit {code} after {time.monotonic() - started:.0f} s ===")
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
