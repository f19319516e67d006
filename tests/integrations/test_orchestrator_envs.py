"""A test environment that cannot be built skips its tests, or fails them when CI is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from cached_envs import STAMP, ensure_env, env_path


@pytest.fixture
def unbuildable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Requirements naming a wheel file that does not exist: fails with no network access."""
    monkeypatch.setenv("ABFLOW_TEST_ENVS", str(tmp_path / "envs"))
    folder = tmp_path / "requirements"
    folder.mkdir()
    (folder / "requirements-broken.txt").write_text(
        f"{tmp_path / 'missing-1.0-py3-none-any.whl'}\n"
    )
    return folder


def test_outside_ci_the_tests_skip_with_the_reason(
    unbuildable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="could not build the broken test environment"):
        ensure_env("broken", unbuildable)
    assert not (env_path("broken", unbuildable) / STAMP).exists()


def test_in_ci_the_tests_fail_with_the_reason(
    unbuildable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"missing-1\.0-py3-none-any\.whl"):
        ensure_env("broken", unbuildable)


def test_a_built_environment_is_reused_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABFLOW_TEST_ENVS", str(tmp_path / "envs"))
    (tmp_path / "requirements-empty.txt").write_text("# nothing\n")
    built = ensure_env("empty", tmp_path)
    assert (built / STAMP).read_text().startswith("built in ")
    (built / "marker").write_text("kept")
    assert ensure_env("empty", tmp_path) == built
    assert (built / "marker").read_text() == "kept"  # not rebuilt
    (tmp_path / "requirements-empty.txt").write_text("# changed pins\n")
    assert ensure_env("empty", tmp_path) != built  # a new hash, a new environment
