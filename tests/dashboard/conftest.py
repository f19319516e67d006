"""Headless Chromium for the browser tests: one session per module, screenshots kept.

Skipped with a reason when Chromium or its driver is not installed. Screenshots go to
``$ABFLOW_TEST_ARTIFACTS`` (default: ``screenshots/`` under pytest's base temporary folder)
and the folder is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import CHROMIUM, DRIVER

_SAVED: list[Path] = []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, 1280 by 900 unless a test resizes it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ABFLOW_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def screenshot(browser: Any, artifacts: Path) -> Callable[[str], Path]:
    """Save the whole page as ``NAME.png`` in the artifacts folder and return its path."""

    def save(name: str) -> Path:
        from selenium.webdriver.common.by import By

        height = browser.execute_script("return document.documentElement.scrollHeight")
        width = browser.get_window_size()["width"]
        browser.set_window_size(width, max(int(height) + 140, 600))
        path = artifacts / f"{name}.png"
        browser.find_element(By.TAG_NAME, "body").screenshot(str(path))
        _SAVED.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SAVED:
        terminalreporter.write_line(f"browser screenshots: {_SAVED[0].parent}")
