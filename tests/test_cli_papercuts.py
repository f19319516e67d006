"""Small things a daily user meets (issue #15, item 10): each through the real entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

import abflow
from abflow.cli.main import main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"abflow {abflow.__version__}\n"


def test_version_imports_no_command() -> None:
    code = (
        "import sys\n"
        "from abflow.cli.main import main\n"
        "try:\n    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    heavy = [m for m in ('sqlalchemy', 'numpy', 'scipy', 'mlflow') if m in sys.modules]\n"
        "    print(e.code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.splitlines()[-1] == "0 []"
