"""What ``abflow`` imports before it prints: the command called, not every command's stack.

``abflow models list`` took 30 s on a busy machine (issue #15, item 4): every command module
was imported first, and with them scipy (power, drift), the gateway and the store. Each check
runs in a fresh interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "sklearn", "pandas", "scipy", "fastapi", "sqlalchemy")


def _loaded_by(argv: list[str], cwd: Path) -> tuple[str, list[str]]:
    """The command's output and the top-level packages loaded when it exited."""
    probe = (
        "import json, sys, io, contextlib\n"
        "from abflow.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "print(json.dumps([out.getvalue(), sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    text, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    return text, loaded


@pytest.mark.parametrize(
    "argv", [["models", "--help"], ["models", "list", "--help"], ["token", "--help"]]
)
def test_a_command_imports_only_its_own_module(argv: list[str], tmp_path: Path) -> None:
    text, loaded = _loaded_by(argv, tmp_path)
    assert [name for name in HEAVY if name in loaded] == []
    assert f"abflow {' '.join(argv[:-1])}" in text  # the probe saw the real help
    assert not (tmp_path / ".abflow").exists()  # help opens no registry


def test_the_root_help_lists_every_command_and_imports_none(tmp_path: Path) -> None:
    from abflow.cli.main import COMMAND_MODULES

    text, loaded = _loaded_by(["--help"], tmp_path)
    assert [name for name in COMMAND_MODULES if name not in text] == []
    assert len(COMMAND_MODULES) == 17  # experiments (#15), ingest (#17), monitor (#13)
    assert [name for name in (*HEAVY, "numpy") if name in loaded] == []


@pytest.mark.parametrize("columns", ["80", "120"])
def test_the_root_help_is_the_real_apps_word_for_word(columns: str, tmp_path: Path) -> None:
    """The table behind the fast root --help says what every command's own help says."""
    from abflow.cli.main import COMMAND_MODULES, ROOT_HELP

    missing = sorted(set(COMMAND_MODULES) - ROOT_HELP.keys())
    assert missing == [], f"add {missing} to ROOT_HELP in abflow/cli/main.py"
    env = {**os.environ, "COLUMNS": columns, "TERM": "dumb"}

    def run(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    fast = run("from abflow.cli.main import main\nmain(['--help'])")
    real = run(
        "from abflow.cli.main import build_app\n"
        "build_app()(args=['--help'], prog_name='abflow', standalone_mode=True)"
    )
    assert fast == real
    assert "validate" in fast
    assert "k8s" in fast
