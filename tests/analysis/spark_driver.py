"""Run SQL statements on a local Spark session and print their rows as JSON.

Run with the python of the Spark test environment (requirements-spark.txt), not abflow's:

    python spark_driver.py JOB.json

JOB.json holds ``tables`` (each ``name``, a Spark DDL ``schema`` and the ``path`` of a JSON
Lines file of its rows) and ``statements`` (SQL text). Each table becomes a temporary view
of that name; each statement is run in turn, and a statement Spark refuses is reported with
its error without stopping the others. Standard output is one JSON document:
``{"spark_version", "ansi", "results": [{"columns", "rows", "seconds"} or {"error"}]}``
(``ansi``: whether ANSI SQL mode, Spark's default, was on);
Spark's own logging goes to standard error.
"""

from __future__ import annotations

import datetime
import decimal
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def _session(warehouse: Path) -> SparkSession:
    return (
        SparkSession.builder.master("local[1]")
        .appName("abflow-analysis-sql")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        # A short run on few cores: the client compiler alone and the serial collector
        # about halve the wall time, and change nothing that Spark computes.
        .config(
            "spark.driver.extraJavaOptions",
            " ".join([f"-Djava.io.tmpdir={warehouse}", *JVM_OPTIONS]),
        )
        .getOrCreate()
    )


def _plain(value: Any) -> Any:
    """A Spark value as JSON can hold it; DECIMAL results (Spark's type for literals such as
    ``0.5``) as floats, since they are compared to SQLite's REALs within a tolerance."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spark-warehouse-") as warehouse:
        spark = _session(Path(warehouse))
        spark.sparkContext.setLogLevel("ERROR")
        try:
            for table in job["tables"]:
                frame = spark.read.schema(table["schema"]).option("mode", "FAILFAST")
                frame.json(table["path"]).createOrReplaceTempView(table["name"])
            for sql in job["statements"]:
                started = time.monotonic()
                try:
                    answer = spark.sql(sql)
                    rows = [[_plain(value) for value in row] for row in answer.collect()]
                except Exception as exc:  # every refusal is reported; none stops the run
                    results.append({"error": f"{type(exc).__name__}: {exc}"[:3000]})
                    continue
                seconds = time.monotonic() - started
                results.append({"columns": answer.columns, "rows": rows, "seconds": seconds})
            version = spark.version
            ansi = spark.conf.get("spark.sql.ansi.enabled")
        finally:
            spark.stop()
    json.dump({"spark_version": version, "ansi": ansi, "results": results}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
