"""The dashboard in a real browser (headless Chromium through Selenium) against a real gateway.

The gateway runs in this process on a real port, over a real SQLite store holding a
simulated experiment; the page signs in with a viewer token, lists the experiment, and shows
its analysis: the numbers on the page are checked against ``abflow.analysis`` on the same
store. Skipped with a reason when Chromium or its driver is not installed.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import uvicorn

from abflow.analysis import analyze
from abflow.routing import assign
from abflow.security.roles import Role
from abflow.security.tokens import create_token
from abflow.serving.app import create_app
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.serving.wiring import StoreTokenStore
from abflow.spec import parse_experiment
from abflow.store import EventStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)

HOSTILE_NAME = "<img src=x onerror=\"document.title='owned'\">"
SPEC = {
    "key": "checkout-ranker",
    "name": HOSTILE_NAME,
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "treatment", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "metrics": [
        {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"},
        {
            "name": "complaints",
            "kind": "conversion",
            "event": "complaint",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.1,
        },
    ],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def simulate(store: EventStore) -> None:
    spec = store.get_experiment(SPEC["key"]).spec
    rng = np.random.default_rng(11)
    start = store.current_phase(SPEC["key"]).started_at + 1
    exposures, outcomes = [], []
    rates = {"control": (0.10, 0.02), "treatment": (0.14, 0.02)}
    for i in range(4000):
        unit = f"user-{i}"
        variant = assign(spec, {"user_id": unit}).variant
        ts = start + i * 0.01  # after the phase opened: analysis reads the phase's window
        exposures.append(
            {"event_id": f"x{i}", "ts": ts, "experiment_key": spec.key, "phase": 1,
             "unit_id": unit, "variant": variant, "attributes_json": None}
        )  # fmt: skip
        for name, rate in zip(("purchase", "complaint"), rates[variant], strict=True):
            if rng.random() < rate:
                outcomes.append(
                    {"event_id": f"{name}{i}", "ts": ts + 5, "unit_id": unit, "name": name,
                     "value": 1.0, "request_id": None, "experiment_key": spec.key}
                )  # fmt: skip
    store.write_events("exposure", exposures)
    store.write_events("outcome", outcomes)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{folder / 'store.db'}"
    spec = parse_experiment(SPEC)
    with EventStore.open(url) as store:
        store.register_experiment(spec)
        simulate(store)
        viewer, _ = create_token(StoreTokenStore(store), "dashboard-test", Role.VIEWER)
        service, _ = create_token(StoreTokenStore(store), "service-test", Role.SERVICE)
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
        assert time.monotonic() < deadline, "the gateway did not start in 30 s"
        assert thread.is_alive(), "the gateway stopped while starting"
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "url": url, "viewer": viewer, "service": service}
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def sign_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{base}/ui/")
    field = wait_for(driver, lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


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


def test_the_page_shows_the_analysis_of_the_store(gateway: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, gateway["base"], gateway["viewer"])
    row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#experiment-table tbody tr"))
    assert row.text.startswith("checkout-ranker")
    assert HOSTILE_NAME in row.text  # shown as text, never run
    assert browser.title == "abflow"
    row.click()
    verdict = wait_for(browser, lambda d: d.find_element(By.ID, "verdict").text or None)
    expected = analyze(gateway["url"], "checkout-ranker")
    assert verdict == expected.decision.summary
    units = [
        cell.text
        for cell in browser.find_elements(By.CSS_SELECTOR, "#variant-table tbody td:nth-child(2)")
    ]
    assert units == [f"{v.units:,}" for v in expected.variants]
    assert sum(v.units for v in expected.variants) == 4000
    srm = browser.find_element(By.ID, "srm").text
    assert f"{expected.srm.p_value:.3g}"[:4] in srm
    rows = browser.find_elements(By.CSS_SELECTOR, "#metric-table tbody tr")
    assert [r.get_attribute("data-metric") for r in rows] == ["purchase", "complaints"]
    purchase = expected.metric("purchase")
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[2] == "treatment"
    assert float(cells[3]) == pytest.approx(purchase.values[0].value, rel=1e-3)
    assert float(cells[4]) == pytest.approx(purchase.values[1].value, rel=1e-3)
    assert cells[7] == purchase.comparisons[0].outcome
    assert rows[0].find_elements(By.CSS_SELECTOR, "svg.effect circle")  # the effect plot
    assert browser.title == "abflow"


def test_assets_carry_a_strict_content_security_policy(gateway: dict[str, Any]) -> None:
    import httpx

    page = httpx.get(f"{gateway['base']}/ui/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="app.js" defer></script>' in page.text
    assert httpx.get(f"{gateway['base']}/ui/secrets.txt").status_code == 404
    assert httpx.get(f"{gateway['base']}/ui", follow_redirects=False).status_code == 307
