"""Real Chromium: deep links open their subject, the Users diagnosis callout, the Events page's
details pane, the Overview's overdue status header, and the Export page's downloads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dashboard.views import WORD_JOINER
from reports import Inputs, run_report
from reports.export import flat_events
from tests.e2e import fixture_data as fx
from tests.e2e.test_dashboard_browser import _check_page, _settle

pytestmark = pytest.mark.e2e

NOW = pd.Timestamp(fx.NOW)


def _goto(page: Any, url: str, heading: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=60_000)
    _settle(page)


def _read(locator: Any) -> str:
    """Return the text a person reads: without the invisible word joiners that keep a UPN or
    URL in Markdown from becoming a link (dashboard.views.md_escape)."""
    return str(locator.inner_text()).replace(WORD_JOINER, "")


def _alert_text(page: Any) -> str:
    return _read(page.locator('[data-testid="stAlert"]').first)


def test_users_link_opens_the_diagnosis_callout(
    page: Any, server: str, inputs: Inputs, screenshots: Path
) -> None:
    _goto(page, f"{server}/users?user=katherine@contoso.com", "Users")
    _check_page(page, screenshots, "users-katherine")
    diag = run_report("diagnosis", inputs, now=NOW, user="katherine@contoso.com").data
    box = page.locator('[data-testid="stAlertContentError"]').first
    # What a person reads (the joiners that stop autolinks are invisible), and nothing is a link:
    # the UPN in the headline is text, not a mailto: link.
    callout = _read(box)
    assert "katherine@contoso.com" in callout
    assert box.locator("a").count() == 0
    assert "Provisioning failed" in callout
    for key in ("headline", "wiki_line", "fix_line", "owner_line", "when_line"):
        assert diag[key] in callout, key
    assert "409" in callout and "Owner: data_owner." in callout
    # The link survives: the address names the user and can go into a ticket.
    assert page.url.endswith("/users?user=katherine%40contoso.com") or page.url.endswith(
        "/users?user=katherine@contoso.com"
    )


def test_users_link_of_a_hostile_name_stays_text(page: Any, server: str) -> None:
    _goto(page, f"{server}/users?user=bold@contoso.com", "Users")
    callout = _alert_text(page)
    assert "bold@contoso.com" in callout
    assert page.locator("strong", has_text="bold").count() == 0
    _goto(page, f"{server}/users?user=xss@contoso.com", "Users")
    assert page.locator('img[src="x"]').count() == 0
    assert page.dialogs == []


def test_events_link_by_change_opens_the_details_pane(
    page: Any, server: str, inputs: Inputs, screenshots: Path
) -> None:
    _goto(page, f"{server}/events?change=ch-009", "Events")
    _check_page(page, screenshots, "events-change")
    details = run_report("events", inputs, change="ch-009").data["details"]
    trouble = details["troubleshooting"]
    # A failed event opens on its troubleshooting tab, like the portal.
    panel = page.get_by_role("tabpanel").first
    assert trouble["recommended_action"] in panel.inner_text()
    assert trouble["error_code"] in panel.inner_text()
    page.get_by_role("tab", name="Summary").click()
    page.wait_for_timeout(300)
    assert page.get_by_text("ch-009").count() >= 1
    href = page.get_by_role("link", name="All events of this cycle").get_attribute("href")
    assert href is not None and href.endswith("events?cycle=cycle-2")


def test_events_link_by_cycle_lists_that_cycle(page: Any, server: str, inputs: Inputs) -> None:
    _goto(page, f"{server}/events?cycle=cycle-2", "Events")
    expected = run_report("events", inputs, cycle="cycle-2")
    n = expected.data["matches"]
    assert n == 3
    assert page.get_by_text(f"{n} events — click a row for its details.").count() == 1


def test_cycles_rows_link_to_their_events(page: Any, server: str) -> None:
    _goto(page, f"{server}/cycles", "Cycles")
    # The grid is a canvas: read the link column's values from its CSV download instead.
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download CSV").last.click()
    text = Path(dl.value.path()).read_text()
    assert "events?cycle=cycle-1" in text and "events?cycle=cycle-3" in text


def test_overview_header_says_overdue(
    page: Any, server: str, inputs: Inputs, screenshots: Path
) -> None:
    _goto(page, f"{server}/", "Overview")
    _check_page(page, screenshots, "overview-header")
    job = run_report("job-header", inputs, now=NOW).frame.iloc[0]
    assert int(job["overdue_min"]) == 24 * 60 + 10
    assert page.get_by_text("Overdue by 24 h 10 min").count() == 1
    assert page.get_by_text("100 % complete · 2 of 2 objects").count() == 1
    link = page.get_by_role("link", name="Provisioning", exact=True)
    assert link.get_attribute("href") == job["provisioning_url"]
    # Times in UTC and the browser's zone (Playwright's default here is UTC or the host's).
    assert page.get_by_text("2026-11-20 08:10 UTC", exact=False).count() >= 1
    assert page.get_by_text("24 h 50 min ago", exact=False).count() >= 1


def test_export_downloads_csv_json_xlsx_named_after_subject(
    page: Any, server: str, server_log: Path, inputs: Inputs
) -> None:
    _goto(page, f"{server}/export", "Export")
    failures = run_report("failures", inputs, now=NOW).frame
    got: dict[str, Path] = {}
    for label in ("Download CSV", "Download JSON", "Download Excel (XLSX)"):
        with page.expect_download(timeout=60_000) as dl:
            page.get_by_role("button", name=label).last.click()
        got[dl.value.suggested_filename] = Path(dl.value.path())
    day = NOW.strftime("%Y-%m-%d")
    assert set(got) == {f"provlens-failures-{day}.{ext}" for ext in ("csv", "json", "xlsx")}
    rows = json.loads(got[f"provlens-failures-{day}.json"].read_text())
    assert [r["error_code"] for r in rows] == list(failures["error_code"])
    assert got[f"provlens-failures-{day}.xlsx"].read_bytes()[:2] == b"PK"
    # Object reports preview without Arrow errors in the terminal.
    for name in ("summary", "estimate", "overview", "events_flat"):
        box = page.get_by_label("Report")
        box.click()
        # The list is virtualised (only the options in view exist): type to narrow it first.
        page.keyboard.type(name)
        page.get_by_role("option", name=re.compile(rf"^{re.escape(name)} —")).first.click()
        _settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text(f"{len(flat_events(inputs)):,} row(s)").count() == 1
    log = server_log.read_text(errors="replace")
    assert "Traceback" not in log and "ArrowTypeError" not in log, log[-3000:]
    # The server's start (imports and warm-up outside a page) prints no Streamlit warning.
    assert "No runtime found" not in log and "ScriptRunContext" not in log, log[:3000]


def test_dark_preference_gets_the_dark_theme(browser: Any, server: str) -> None:
    for scheme, dark in (("dark", True), ("light", False)):
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        try:
            _goto(pg, f"{server}/", "Overview")
            rgb = pg.evaluate(
                "() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]'))"
                ".backgroundColor"
            )
            channels = [int(c) for c in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
            assert (sum(channels) / 3 < 100) is dark, (scheme, rgb)
        finally:
            context.close()


def test_clicking_a_user_row_opens_it_and_names_it_in_the_url(
    page: Any, server: str, inputs: Inputs
) -> None:
    _goto(page, f"{server}/users", "Users")
    assert page.locator('[data-testid="stAlertContentSuccess"]').count() == 0
    box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 18)  # the first row's selection box
    page.locator('[data-testid="stAlertContentSuccess"]').first.wait_for(timeout=60_000)
    _settle(page)
    first = run_report("users", inputs).frame.iloc[0]
    assert page.url.endswith(f"users?user={first['source_upn'].replace('@', '%40')}")
    diag = run_report("diagnosis", inputs, now=NOW, user=first["source_upn"]).data
    callout = _read(page.locator('[data-testid="stAlertContentSuccess"]').first)
    assert diag["headline"] in callout and diag["when_line"] in callout
