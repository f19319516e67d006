"""The HTML report in headless Chromium at 1,000 px: the metrics table fits its card.

A three-variant experiment with long variant names and a Holm correction (so p-values carry
their raw value) makes the widest table the report draws; every verdict cell must end inside
the page's card, with nothing to scroll. Screenshot saved (see conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_support import NEEDS_CHROMIUM

from abflow.analysis import analyze, render_html
from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.store import EventStore

pytestmark = NEEDS_CHROMIUM

SPEC = {
    "key": "ranker-three-way",
    "name": "Ranker: distilled and quantised challengers against the champion",
    "variants": [
        {"name": "champion-2025-10", "model": "models:/ranker@champion"},
        {"name": "challenger-distilled", "model": "models:/ranker@distilled"},
        {"name": "challenger-quantised", "model": "models:/ranker@quantised"},
    ],
    "metrics": [
        {
            "name": "purchase_within_7_days",
            "kind": "conversion",
            "event": "purchase",
            "role": "primary",
        },
        {"name": "basket_value", "kind": "mean", "event": "basket"},
        {
            "name": "complaints",
            "kind": "conversion",
            "event": "complaint",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.2,
        },
    ],
}
RATES = {
    "champion-2025-10": 0.10,
    "challenger-distilled": 0.125,
    "challenger-quantised": 0.102,
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    spec = parse_experiment(SPEC)
    rng = np.random.default_rng(21)
    with EventStore.open(f"sqlite:///{folder / 'store.db'}") as store:
        store.register_experiment(spec)
        start = store.current_phase(spec.key).started_at + 1
        exposures, outcomes = [], []
        for i in range(3000):
            unit = f"u{i}"
            variant = assign(spec, {"user_id": unit}).variant
            ts = start + i * 0.01
            exposures.append(
                {"event_id": f"x{i}", "ts": ts, "experiment_key": spec.key, "phase": 1,
                 "unit_id": unit, "variant": variant, "attributes_json": None}
            )  # fmt: skip
            events = [("purchase", RATES[variant], 1.0), ("complaint", 0.3, 1.0)]
            events.append(("basket", 0.8, float(rng.gamma(2.0, 30.0))))
            for name, rate, value in events:
                if rng.random() < rate:
                    outcomes.append(
                        {"event_id": f"{name}{i}", "ts": ts + 5, "unit_id": unit,
                         "name": name, "value": value, "request_id": None,
                         "experiment_key": spec.key}
                    )  # fmt: skip
        store.write_events("exposure", exposures)
        store.write_events("outcome", outcomes)
        result = analyze(store, spec.key)
    assert any(c.adjusted_p_value != c.p_value for m in result.metrics for c in m.comparisons)
    path = folder / "report.html"
    path.write_text(render_html(result))
    return path


def test_the_metrics_table_fits_its_card_at_1000_px(
    report: Path, browser: Any, screenshot: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(1000, 900)
    browser.get(report.as_uri())
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert 960 <= width <= 1000  # the viewport, less a scroll bar
    card = browser.execute_script(
        "const main = document.querySelector('main');"
        "const box = main.getBoundingClientRect(), style = getComputedStyle(main);"
        "return [box.left + parseFloat(style.paddingLeft),"
        "        box.right - parseFloat(style.paddingRight)];"
    )
    verdicts = browser.find_elements(By.CSS_SELECTOR, "#metrics td.verdict-cell")
    assert len(verdicts) == 3 * 2  # three metrics, two challengers each
    for cell in verdicts:
        rect = browser.execute_script("return arguments[0].getBoundingClientRect()", cell)
        assert rect["left"] >= card[0]
        assert rect["right"] <= card[1] + 0.5, cell.text
    scrolls = browser.execute_script(
        "return [...document.querySelectorAll('.wide')].map(e => e.scrollWidth - e.clientWidth)"
    )
    assert scrolls[0] == 0  # the metrics table needs no scrolling
    numbers = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#metrics td")]
    assert not any(text.endswith("…") for text in numbers)
    screenshot("report-1000px")
