"""docs/dashboard.md: its Python example prints what the page says it prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def test_the_python_example_prints_what_the_page_shows() -> None:
    text = PAGE.read_text()
    code = re.search(r"```python\n(.*?)```", text, flags=re.DOTALL)
    shown = re.search(r"prints\n\n```text\n(.*?)```", text, flags=re.DOTALL)
    assert code is not None
    assert shown is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(PAGE), "exec"), {})
    assert out.getvalue() == shown.group(1)
