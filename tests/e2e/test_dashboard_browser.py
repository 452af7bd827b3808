"""Real Chromium against `streamlit run`: every page renders, without exceptions, with figures
that match the store; hostile display names stay literal. Screenshots go to artifacts/."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from reports import Inputs, run_report
from tests.e2e import fixture_data as fx

pytestmark = pytest.mark.e2e

# url path -> (title, screenshot name)
PAGES = {
    "": "Overview",
    "cycles": "Cycles",
    "users": "Users",
    "events": "Events",
    "failures": "Failures",
    "coverage": "Coverage",
    "estimate": "Estimate",
    "scim_traffic": "Wiki SCIM traffic",
    "export": "Export",
}

FIGURES_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el =>
  (el._fullData || el.data || []).map(t => ({
    type: t.type, name: t.name,
    x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : [],
    base: t.base ? Array.from(t.base) : []
  })))
"""


def _open(page: Any, server: str, path: str, title: str) -> None:
    """Show page ``title``: load the app once, then navigate in-app like a user."""
    if not page.url.startswith(server):
        page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    else:
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
    _settle(page)


def _settle(page: Any) -> None:
    """Wait until the script run is over and every chart has drawn."""
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000
    )
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]') && "
        "Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        ".every(c => c.querySelector('.main-svg')) && "
        "Array.from(document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]'))"
        ".every(c => c.querySelector('canvas.marks, svg.marks'))",
        timeout=60_000,
    )
    page.wait_for_timeout(200)


def _vega_drawn(page: Any) -> int:
    """Return how many Vega-Lite charts the page shows with their marks drawn."""
    return int(page.locator('[data-testid="stVegaLiteChart"]', has=page.locator(".marks")).count())


def _figures(page: Any) -> list[list[dict[str, Any]]]:
    return page.evaluate(FIGURES_JS)


def _check_page(page: Any, screenshots: Path, name: str) -> list[list[dict[str, Any]]]:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).first.inner_text()
    _screenshot(page, screenshots / f"{name}.png")
    return _figures(page)


def _screenshot(page: Any, path: Path) -> None:
    """Save the whole page: Streamlit scrolls inside stMain, so grow the viewport to fit it."""
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 600), 6000)})
    page.wait_for_timeout(250)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def _report(name: str, inputs: Inputs, **kw: Any) -> Any:
    return run_report(name, inputs, now=__import__("pandas").Timestamp(fx.NOW), **kw)


def test_every_page_renders_with_figures_matching_the_store(
    page: Any, server: str, inputs: Inputs, screenshots: Path
) -> None:
    summary = _report("summary", inputs).data
    cycles = _report("cycles", inputs).frame
    failures = _report("failures", inputs).frame
    coverage = _report("coverage", inputs).frame
    est = _report("estimate", inputs).data

    _open(page, server, "", "Overview")
    figs = _check_page(page, screenshots, "overview")
    # Events over time is a Vega-Lite chart (its values: test_dashboard_cli_parity): drawn.
    assert figs == []
    assert _vega_drawn(page) == 1
    assert summary["events"] == 12

    _open(page, server, "cycles", "Cycles")
    figs = _check_page(page, screenshots, "cycles")
    timeline = figs[0]
    assert sum(len(t["y"]) for t in timeline) == len(cycles) == 3

    _open(page, server, "users", "Users")
    figs = _check_page(page, screenshots, "users")
    # Nothing is picked until the viewer picks: no timeline yet, a prompt instead.
    assert figs == [] and _vega_drawn(page) == 0
    assert page.get_by_text("Pick a user").count() == 1

    _open(page, server, "failures", "Failures")
    figs = _check_page(page, screenshots, "failures")
    assert sum(sum(t["x"]) for t in figs[0]) == int(failures["events"].sum()) == 3

    _open(page, server, "coverage", "Coverage")
    figs = _check_page(page, screenshots, "coverage")
    funnel = figs[0][0]
    assert funnel["type"] == "funnel"
    assert funnel["x"][0] == int(coverage["in_scope"].sum())

    _open(page, server, "estimate", "Estimate")
    figs = _check_page(page, screenshots, "estimate")
    bars = dict(zip(figs[0][0]["y"], figs[0][0]["x"], strict=True))
    assert bars["Documented slowest"] == pytest.approx(est["docs_max_minutes"] / 60)

    _open(page, server, "scim_traffic", "Wiki SCIM traffic")
    figs = _check_page(page, screenshots, "scim_traffic")
    assert sum(sum(t["y"]) for t in figs[0]) == len(inputs.scim_requests) == 13

    _open(page, server, "export", "Export")
    _check_page(page, screenshots, "export")
    assert page.get_by_text(f"{len(failures)} row(s)").count() == 1
    assert page.get_by_role("button", name="Download Excel (XLSX)").count() == 1

    assert page.dialogs == []


def test_hostile_display_names_render_literally(page: Any, server: str, screenshots: Path) -> None:
    _open(page, server, "users", "Users")
    box = page.get_by_label("Search by name, UPN or object id")
    box.fill("xss@contoso")
    box.press("Enter")
    page.locator('[data-testid="stText"]', has_text=fx.XSS_NAME).first.wait_for(timeout=60_000)
    _settle(page)
    _check_page(page, screenshots, "users-xss")
    assert _vega_drawn(page) == 1  # the user's timeline
    # Shown as text ...
    assert page.locator('[data-testid="stText"]', has_text=fx.XSS_NAME).count() >= 1
    # ... never as markup: no <img src="x"> made it into the page, no script ran.
    assert page.locator('img[src="x"]').count() == 0
    assert page.dialogs == []

    # The support pack is built on click and downloads as a zip of CSV + JSON per table.
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download support pack (zip)").click()
    with zipfile.ZipFile(download.value.path()) as zf:
        names = set(zf.namelist())
        assert {"user.csv", "events.csv", "wiki_requests.json"} <= names
        events = zf.read("events.csv").decode()
    assert events.count("\nev-") == 2  # the user's two events
    assert fx.XSS_NAME in events

    box.fill("bold@contoso")
    box.press("Enter")
    page.locator('[data-testid="stText"]', has_text=fx.BOLD_NAME).first.wait_for(timeout=60_000)
    assert page.locator("strong", has_text="bold").count() == 0
