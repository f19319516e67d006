"""What the browser tests share besides fixtures (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)

RAW_NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d{6,}|\d(?:\.\d+)?e[-+]?\d+)(?![\w%])", re.IGNORECASE)
"""What a person should never read: float noise (``0.3968127``) or exponents (``8.65e-38``).
Rates are checked where they are shown: a percentage, never a bare fraction."""


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def number(text: str) -> float:
    """``54.21%`` → 0.5421, ``+7.59 pp`` → 0.0759, ``13.5 ms`` → 13.5, ``1,009`` → 1009."""
    match = re.fullmatch(r"\s*([-+]?[\d,]*\.?\d+)\s*(%|pp|ms|/1k)?\s*", text)
    assert match is not None, f"not a formatted number: {text!r}"
    value = float(match.group(1).replace(",", ""))
    return value / 100 if match.group(2) in ("%", "pp") else value
