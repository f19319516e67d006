"""Read-only commands never create a store: run where none exists, they say so and exit 2.

Opening a missing SQLite file creates it (folder and all); ``abflow analyze`` in the wrong
directory used to leave an empty ``.abflow/abflow.db`` behind and suggest ``db upgrade``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from abflow.cli.main import main
from abflow.errors import StoreError
from abflow.store import EventStore

READ_ONLY = [
    ["analyze", "exp"],
    ["gate", "exp", "--require", "no-harm"],
    ["rollout", "status", "exp"],
    ["audit", "verify"],
    ["audit", "log"],
    ["experiments", "list"],
    ["experiments", "show", "exp"],
    ["token", "list"],
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_read_only_command_refuses_a_missing_store(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no store here (.abflow/abflow.db does not exist)" in err
    assert "pass --store or set ABFLOW_STORE_URL" in err
    assert list(tmp_path.iterdir()) == []  # no .abflow folder, no file


def test_explicit_missing_store_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nested" / "s.db"
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["analyze", "exp", "--store", f"sqlite:///{missing}"])
    assert exited.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nested").exists()


def test_existing_store_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    EventStore.open(url).close()
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["token", "list", "--store", url])
    assert exited.value.code == 0
    assert "no store here" not in capsys.readouterr().err


def test_must_exist_open_refuses_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "d" / "s.db"
    with pytest.raises(StoreError, match="no store here"):
        EventStore.open(f"sqlite:///{missing}", must_exist=True)
    assert not missing.parent.exists()
    EventStore.open("sqlite://", must_exist=True).close()  # in memory: nothing to refuse


def test_db_status_where_no_store_exists_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABFLOW_STORE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["db", "status"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "schema version 0 (no file yet)" in out
    assert "run `abflow db upgrade`" in out
    assert list(tmp_path.iterdir()) == []  # no .abflow folder, no file
