"""The dashboard in a real browser (headless Chromium through Selenium) against a real gateway.

The gateway runs in this process on a real port, over a real SQLite store holding two
simulated experiments: one with a clear effect and a guardrail that holds, one whose rollout
the controller has started. The page signs in with a viewer token; the numbers it shows are
checked against numpy/scipy on the simulated units and against ``abflow.analysis`` on the same
store, and the page never shows a raw number (``0.39681``, ``8.65e-38``). Screenshots are
saved (see conftest).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from browser_support import NEEDS_CHROMIUM, RAW_NUMBER, number, wait_for
from scipy import stats

from abflow.analysis import analyze
from abflow.dashboard.monitoring import NO_DATA
from abflow.rollout.controller import tick
from abflow.routing import assign
from abflow.security.roles import Role
from abflow.security.tokens import create_token
from abflow.serving.app import create_app
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.serving.wiring import StoreTokenStore
from abflow.spec import parse_experiment
from abflow.store import EventStore
from abflow.store.monitoring import MonitorRecord, save_monitor_results

pytestmark = NEEDS_CHROMIUM

HOSTILE_NAME = "<img src=x onerror=\"document.title='owned'\">"
VARIANTS = [
    {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
    {"name": "treatment", "model": "python:abflow.serving.demo_models:challenger"},
]
METRICS = [
    {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"},
    {
        "name": "complaints",
        "kind": "conversion",
        "event": "complaint",
        "role": "guardrail",
        "direction": "decrease",
        "margin": 0.2,
    },
]
SPEC = {"key": "checkout-ranker", "name": HOSTILE_NAME, "variants": VARIANTS, "metrics": METRICS}
RAMP = {
    "key": "fraud-ramp",
    "variants": VARIANTS,
    "metrics": METRICS,
    "rollout": {
        "steps": [
            {"traffic": 0.1, "min_duration_hours": 1, "min_samples": 100},
            {"traffic": 0.5, "min_duration_hours": 1, "min_samples": 100},
        ],
        "guardrails": ["complaints"],
    },
}
SHADOW = {
    "key": "fraud-shadow",
    "variants": [
        {"name": "champion", "model": "models:/fraud@champion"},
        {"name": "challenger", "model": "models:/fraud@challenger"},
    ],
    "weights": [1.0, 0.0],
    "metrics": [{"name": "recall", "kind": "recall", "role": "primary"}],
}
UNITS = 4000
RATES = {"control": (0.10, 0.30), "treatment": (0.14, 0.30)}  # purchase, complaint


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def simulate(store: EventStore) -> dict[str, dict[str, np.ndarray]]:
    """Exposures and outcomes for SPEC; returns each variant's 0/1 outcomes per unit."""
    spec = store.get_experiment(SPEC["key"]).spec
    rng = np.random.default_rng(11)
    start = store.current_phase(SPEC["key"]).started_at + 1
    exposures, outcomes = [], []
    seen: dict[str, dict[str, list[float]]] = {v: {"purchase": [], "complaint": []} for v in RATES}
    for i in range(UNITS):
        unit = f"user-{i}"
        variant = assign(spec, {"user_id": unit}).variant
        ts = start + i * 0.01  # after the phase opened, all on one day
        exposures.append(
            {"event_id": f"x{i}", "ts": ts, "experiment_key": spec.key, "phase": 1,
             "unit_id": unit, "variant": variant, "attributes_json": None}
        )  # fmt: skip
        for name, rate in zip(("purchase", "complaint"), RATES[variant], strict=True):
            happened = rng.random() < rate
            seen[variant][name].append(float(happened))
            if happened:
                outcomes.append(
                    {"event_id": f"{name}{i}", "ts": ts + 5, "unit_id": unit, "name": name,
                     "value": 1.0, "request_id": None, "experiment_key": spec.key}
                )  # fmt: skip
    store.write_events("exposure", exposures)
    store.write_events("outcome", outcomes)
    return {v: {k: np.array(x) for k, x in by.items()} for v, by in seen.items()}


def simulate_shadow(store: EventStore) -> dict[str, np.ndarray]:
    """400 requests answered by the champion with a shadow copy to the challenger, which
    scores 0.1 higher; returns both scores per request."""
    rng = np.random.default_rng(12)
    start = store.current_phase(SHADOW["key"]).started_at + 1
    served = np.clip(rng.uniform(0, 1, 400), 0, 1)
    shadow = np.clip(served + 0.1 + rng.normal(0, 0.05, 400), 0, 1)
    rows = []
    for i, scores in enumerate(zip(served, shadow, strict=True)):
        for is_shadow, variant, score in zip(
            (False, True), ("champion", "challenger"), scores, strict=True
        ):
            rows.append(
                {"event_id": f"s{i}{variant}", "ts": start + i, "request_id": f"r{i}",
                 "experiment_key": SHADOW["key"], "phase": 1, "unit_id": f"u{i}",
                 "variant": variant, "model_version": f"{variant}-v1",
                 "latency_ms": 4.0 + float(is_shadow), "is_fallback": False,
                 "is_shadow": is_shadow, "score": float(score), "output_json": None,
                 "features_hash": None, "error": None}
            )  # fmt: skip
    store.write_events("exposure", [
        {"event_id": f"sx{i}", "ts": start + i, "experiment_key": SHADOW["key"], "phase": 1,
         "unit_id": f"u{i}", "variant": "champion", "attributes_json": None}
        for i in range(400)
    ])  # fmt: skip
    store.write_events("prediction", rows)
    return {"served": served, "shadow": shadow}


def monitor(store: EventStore) -> list[MonitorRecord]:
    """Three hourly windows of prediction drift per variant (the last an alarm on the
    treatment) and the treatment's false-positive rate, as ``abflow monitor`` stores them."""
    start = store.current_phase(SPEC["key"]).started_at
    psi = {"control": (0.01, 0.02, 0.015), "treatment": (0.02, 0.08, 0.31)}
    records = []
    for index in range(3):
        window = start + 3600.0 * index
        rows = [
            MonitorRecord(SPEC["key"], window, window + 3600, "prediction_drift", variant, "",
                          "psi", values[index], None, 0.2, values[index] > 0.2, 500, 480)
            for variant, values in psi.items()
        ]  # fmt: skip
        rows.append(
            MonitorRecord(SPEC["key"], window, window + 3600, "quality", "treatment", "", "fpr",
                          0.05 + 0.01 * index, 0.3, None, False, 200, 210)
        )  # fmt: skip
        save_monitor_results(store.engine, SPEC["key"], window, rows)
        records += rows
    return records


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{folder / 'store.db'}"
    spec = parse_experiment(SPEC)
    with EventStore.open(url) as store:
        store.register_experiment(spec)
        store.register_experiment(parse_experiment(RAMP))
        store.register_experiment(parse_experiment(SHADOW))
        units = simulate(store)
        shadow = simulate_shadow(store)
        monitored = monitor(store)
        started = tick(store, RAMP["key"], actor="ramp-test")
        viewer, _ = create_token(StoreTokenStore(store), "dashboard-test", Role.VIEWER)
        service, _ = create_token(StoreTokenStore(store), "service-test", Role.SERVICE)
        audit = {key: store.audit_entries(key) for key in (SPEC["key"], RAMP["key"])}
    assert started.action == "started"
    app = create_app(
        GatewaySettings(store_url=url, journal_dir=folder / "journal"),
        config=GatewayConfig(experiments=[spec], default_experiment=spec.key),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start in 120 s"
        assert thread.is_alive(), "the gateway stopped while starting"
        time.sleep(0.05)
    yield {
        "base": f"http://127.0.0.1:{port}",
        "url": url,
        "viewer": viewer,
        "service": service,
        "units": units,
        "shadow": shadow,
        "monitored": monitored,
        "audit": audit,
    }
    server.should_exit = True
    thread.join(timeout=60)


def sign_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{base}/ui/")
    field = wait_for(driver, lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


def open_experiment(driver: Any, base: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    def loaded(d: Any) -> bool:
        title = d.find_element(By.ID, "result-title").text
        shown = d.find_element(By.ID, "result").is_displayed()
        return bool(shown and (title == key or title.endswith(f"({key})")))

    driver.get(f"{base}/ui/#/experiments/{key}")
    wait_for(driver, loaded)


def texts(driver: Any, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_a_wrong_token_is_refused_with_a_message(gateway: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], "not-a-token")
    error = wait_for(browser, lambda d: d.find_element(By.ID, "login-error").text or None)
    assert error == "the token was not accepted"
    assert browser.find_element(By.ID, "login").is_displayed()


def test_a_service_token_may_not_read_results(gateway: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["service"])
    status = wait_for(
        browser,
        lambda d: (
            (d.find_element(By.ID, "status").text or "").startswith("error")
            and d.find_element(By.ID, "status").text
        ),
    )
    assert "may not read results" in status


def test_the_list_shows_status_and_rollout_stage(
    gateway: dict[str, Any], browser: Any, screenshot: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["viewer"])
    wait_for(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#experiment-table tbody tr")) == 3
    )
    rows = {
        row.get_attribute("data-key"): [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#experiment-table tbody tr")
    }
    ranker, ramp = rows["checkout-ranker"], rows["fraud-ramp"]
    assert ranker[0] == f"checkout-ranker\n{HOSTILE_NAME}"  # shown as text, never run
    assert browser.title == "abflow"
    assert ranker[1:3] == ["running\nserved here", "no rollout plan"]  # in the gateway's config
    assert ranker[3] == "control 50%, treatment 50%"
    assert ramp[1].split("\n")[0] == "ramping"
    assert ramp[2:4] == ["step 1 of 2: 10% to treatment", "control 90%, treatment 10%"]
    assert ramp[4] == "2"  # the first step opened a new phase
    scroll = "const e = document.querySelector('#experiments .wide'); return e.scrollWidth - e.clientWidth"
    assert browser.execute_script(scroll) == 0  # the list fits a 1280 px window
    screenshot("dashboard-list")


def test_the_page_shows_the_analysis_of_the_store(
    gateway: dict[str, Any], browser: Any, screenshot: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["viewer"])
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#experiment-table tbody tr"))
    open_experiment(browser, gateway["base"], "checkout-ranker")
    expected = analyze(gateway["url"], "checkout-ranker")
    units = gateway["units"]
    assert browser.find_element(By.ID, "verdict-summary").text == expected.decision.summary

    # units and SRM against the simulation and scipy
    variant_rows = [r.split(" ") for r in texts(browser, "#variant-table tbody tr")]
    assert [r[0] for r in variant_rows] == ["control", "treatment"]
    counts = [len(units[v]["purchase"]) for v in ("control", "treatment")]
    assert [int(number(r[1])) for r in variant_rows] == counts
    assert sum(counts) == UNITS
    assert number(variant_rows[0][2]) == pytest.approx(counts[0] / UNITS, abs=5e-5)
    srm = browser.find_element(By.ID, "srm").text
    srm_p = float(re.search(r"SRM check: p = ([\d.]+)", srm).group(1))  # type: ignore[union-attr]
    assert srm_p == pytest.approx(stats.chisquare(counts).pvalue, abs=1e-4)
    assert srm.endswith("the split matches the weights.")

    # the primary metric: rates per unit, relative effect and its delta-method interval
    rows = browser.find_elements(By.CSS_SELECTOR, "#metric-table tbody tr")
    assert [r.get_attribute("data-metric") for r in rows] == ["purchase", "complaints"]
    cells = {
        c.get_attribute("class").split()[-1]: c.text
        for c in rows[0].find_elements(By.TAG_NAME, "td")
        if c.get_attribute("class")
    }
    values = [c.text for c in rows[0].find_elements(By.CSS_SELECTOR, "td.value")]
    control, treatment = units["control"]["purchase"], units["treatment"]["purchase"]
    assert [v[-1] for v in values] == ["%", "%"]  # a rate reads as a percentage, not 0.0972
    assert cells["effect"].endswith("%")
    assert number(values[0]) == pytest.approx(control.mean(), abs=5e-5)
    assert number(values[1]) == pytest.approx(treatment.mean(), abs=5e-5)
    lift = treatment.mean() / control.mean() - 1
    se = np.sqrt(
        treatment.var(ddof=1) / len(treatment) / control.mean() ** 2
        + treatment.mean() ** 2 * control.var(ddof=1) / len(control) / control.mean() ** 4
    )
    assert number(cells["effect"]) == pytest.approx(lift, abs=5e-5)
    low, high = re.findall(r"[-+][\d.]+", cells["interval"])
    assert cells["interval"].endswith("%")
    z = stats.norm.ppf(0.975)
    assert float(low) / 100 == pytest.approx(lift - z * se, abs=3e-4)
    assert float(high) / 100 == pytest.approx(lift + z * se, abs=3e-4)
    welch = stats.ttest_ind(treatment, control, equal_var=False).pvalue
    assert (cells["p"] == "<0.0001") == (welch < 1e-4)
    purchase = expected.metric("purchase").comparisons[0]
    assert cells["status"] == purchase.outcome == "better"

    # a guardrail that holds reads "pass" in green, in the table and in the effect plot
    complaints = expected.metric("complaints").comparisons[0]
    assert complaints.guardrail == "pass"
    status = rows[1].find_element(By.CSS_SELECTOR, "td.status .pill")
    assert (status.text, status.get_attribute("class")) == ("pass", "pill good")
    dots = browser.find_elements(By.CSS_SELECTOR, "#effect-charts svg circle")
    assert [d.get_attribute("fill") for d in dots] == ["#2e7d32", "#2e7d32"]  # better, pass

    # one day of data still draws the cumulative effect: a dot and its interval per metric
    timeline = browser.find_elements(By.CSS_SELECTOR, "#timeline-charts svg")
    assert len(timeline) == 2
    for chart in timeline:
        assert chart.find_elements(By.TAG_NAME, "circle")
        ends = [
            [float(line.get_attribute(a)) for a in ("x1", "x2", "y1", "y2")]
            for line in chart.find_elements(By.TAG_NAME, "line")
        ]
        assert any(x1 == x2 and abs(y1 - y2) > 5 for x1, x2, y1, y2 in ends)  # the whisker

    # no raw number and no fraction of a day anywhere on the page
    page = browser.find_element(By.TAG_NAME, "main").text
    assert RAW_NUMBER.findall(page) == []
    assert not re.search(r"\b0\.\d+ days", page)
    assert "Progress: " in page

    # drift over time per variant, from the monitor's history, and its alarm
    charts = browser.find_elements(By.CSS_SELECTOR, "#monitoring-charts svg")
    titles = [c.find_element(By.TAG_NAME, "title").get_attribute("textContent") for c in charts]
    assert titles == ["prediction drift (psi)", "quality (fpr)"]
    lines = charts[0].find_elements(By.TAG_NAME, "polyline")
    assert [len(line.get_attribute("points").split()) for line in lines] == [3, 3]  # windows
    alarms = [a for a in gateway["monitored"] if a.is_alarm]
    shown = texts(browser, "#monitoring-alarms tbody tr")
    assert len(shown) == len(alarms) == 1
    assert f"treatment prediction drift (psi) {alarms[0].value:.4f} 0.2" in shown[0]
    assert browser.find_element(By.ID, "monitoring-message").text.startswith("3 monitoring windows")
    assert browser.title == "abflow"
    screenshot("dashboard-experiment")

    # at 1,000 px every verdict still ends inside the metrics card
    browser.set_window_size(1000, 900)
    edges = browser.execute_script(
        "const card = document.querySelector('#metric-table').closest('.card');"
        "const right = card.getBoundingClientRect().right;"
        "return [...document.querySelectorAll('#metric-table td.status')]"
        ".map(td => right - td.getBoundingClientRect().right);"
    )
    assert len(edges) == 2
    assert min(edges) >= 0


def test_the_rollout_and_its_audit_trail(
    gateway: dict[str, Any], browser: Any, screenshot: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["viewer"])
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#experiment-table tbody tr"))
    open_experiment(browser, gateway["base"], "fraud-ramp")
    assert browser.find_element(By.ID, "rollout-stage").text.startswith(
        "step 1 of 2: 10% to treatment"
    )
    steps = browser.find_elements(By.CSS_SELECTOR, "#rollout-steps li")
    assert [(s.text, s.get_attribute("class")) for s in steps] == [
        ("10%", "step current"),
        ("50%", "step next"),
    ]
    history = texts(browser, "#rollout-history tbody tr")
    assert len(history) == 1
    assert "ramp step 1: 10% to the challenger" in history[0]
    assert "ramp-test" in history[0]
    entries = gateway["audit"]["fraud-ramp"]
    audit = browser.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in audit] == [
        str(e.seq) for e in reversed(entries)
    ]
    actions = [r.find_elements(By.TAG_NAME, "td")[3].text for r in audit]
    assert actions.count("spec registered") == sum(
        e.action == "experiment.registered" for e in entries
    )
    assert "{" not in browser.find_element(By.ID, "audit-table").text  # no Python dicts
    screenshot("dashboard-rollout")


def test_the_shadow_comparison(
    gateway: dict[str, Any], browser: Any, screenshot: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["viewer"])
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#experiment-table tbody tr"))
    open_experiment(browser, gateway["base"], "fraud-shadow")
    assert browser.find_element(By.ID, "shadow").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "#shadow-body h4").text == (
        "Shadow challenger vs served"
    )
    rows = {
        cells[0]: cells
        for cells in (
            [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#shadow-body tbody tr")
        )
    }
    served, shadow = gateway["shadow"]["served"], gateway["shadow"]["shadow"]
    score = rows["score"]
    assert number(score[1]) == len(served) == 400  # every request paired
    assert float(score[2]) == pytest.approx(served.mean(), rel=5e-4)
    assert float(score[3]) == pytest.approx(shadow.mean(), rel=5e-4)
    diff = shadow - served
    low, high = stats.t.interval(0.95, len(diff) - 1, diff.mean(), stats.sem(diff))
    assert [float(x) for x in re.findall(r"[-+][\d.]+", score[5])] == pytest.approx(
        [low, high], rel=1e-3
    )
    positive = rows["positive_rate"]
    assert number(positive[2]) == pytest.approx((served >= 0.5).mean(), abs=5e-5)
    assert number(positive[3]) == pytest.approx((shadow >= 0.5).mean(), abs=5e-5)
    assert score[6] == "<0.0001 (paired t)"  # not 1.71e-135
    assert RAW_NUMBER.findall(browser.find_element(By.TAG_NAME, "main").text) == []
    assert browser.find_element(By.ID, "monitoring-message").text == NO_DATA  # never monitored
    # every latency falls in one bin: the histogram is a spike per variant, not nothing
    spikes = browser.find_elements(By.CSS_SELECTOR, "#latency-chart svg circle")
    assert len(spikes) == 1  # the served variant (shadow calls are not served latency)
    screenshot("dashboard-shadow")


def test_the_views_need_a_viewer_token(gateway: dict[str, Any]) -> None:
    import httpx

    base = gateway["base"]
    for path in ("/ui/api/experiments", "/ui/api/experiments/checkout-ranker"):
        assert httpx.get(base + path, timeout=60).status_code == 401
        service = {"Authorization": f"Bearer {gateway['service']}"}
        assert httpx.get(base + path, headers=service, timeout=60).status_code == 403
        viewer = {"Authorization": f"Bearer {gateway['viewer']}"}
        assert httpx.get(base + path, headers=viewer, timeout=60).status_code == 200
    viewer = {"Authorization": f"Bearer {gateway['viewer']}"}
    missing = httpx.get(base + "/ui/api/experiments/nope", headers=viewer, timeout=60)
    assert missing.status_code == 404
    assert "nope" in missing.text


def test_assets_carry_a_strict_content_security_policy(gateway: dict[str, Any]) -> None:
    import httpx

    page = httpx.get(f"{gateway['base']}/ui/", timeout=60)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="app.js" defer></script>' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN
    assert httpx.get(f"{gateway['base']}/ui/secrets.txt", timeout=60).status_code == 404
    redirect = httpx.get(f"{gateway['base']}/ui", follow_redirects=False, timeout=60)
    assert redirect.status_code == 307
