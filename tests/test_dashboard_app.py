"""AppTest: every dashboard page on a known store shows what the report functions compute."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from dashboard.views import WORD_JOINER
from ingest.store import Store
from reports import Filters, Inputs, run_report
from tests.e2e import fixture_data as fx

# Show real exception messages in at.exception (the committed config hides them from users).
config.set_option("client.showErrorDetails", "full")

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
NOW = pd.Timestamp(fx.NOW)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dash") / "store"
    fx.build_store(path)
    return path


@pytest.fixture(scope="module")
def inputs(store_path: Path) -> Inputs:
    store = Store(store_path)
    return Inputs(**{t: store.read(t) for t in Inputs.__dataclass_fields__})


@pytest.fixture
def env(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVLENS_STORE", str(store_path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    return store_path


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page:
        at.switch_page(f"screens/{page}.py").run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frames(at: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe]


def charts(at: AppTest) -> list:
    """Return every chart drawn: Plotly's and Vega-Lite's (Overview and Users)."""
    return list(at.get("plotly_chart")) + list(at.get("vega_lite_chart"))


def report(name: str, inputs: Inputs, **kw):
    return run_report(name, inputs, now=NOW, **kw)


def test_overview_kpis_equal_summary_and_job_state(env: Path, inputs: Inputs) -> None:
    at = _app()
    summary = report("summary", inputs).data
    m = metrics(at)
    assert m["Events"] == f"{summary['events']:,}" == "12"
    # user-facing: hidden noise out of both sides (8 of 11), where summary counts all (8 of 12)
    shown = report("overview", inputs).data["success_rate"]
    assert m["Success rate"] == f"{100 * shown:.1f} %" == "72.7 %"
    assert f"{100 * summary['success_rate']:.1f} %" == "66.7 %"
    assert m["Failures"] == str(sum(summary["failures_by_error_code"].values())) == "3"
    assert m["Objects"] == str(summary["source_objects"])
    risk = report("quarantine-risk", inputs).frame
    assert m["Quarantine risk"] == risk.iloc[0]["risk"] == "low"
    tile = next(x for x in at.metric if x.label == "Quarantine risk")
    assert tile.delta == "0 quarantined"
    assert m["Cycles"] == str(summary["cycles"]) == "3"
    latest = frames(at)[-1]
    grouped = report("recent-failures", inputs).frame
    # One row per user and error code, not one per retry.
    assert (
        list(latest["error_code"])
        == list(grouped["error_code"])
        == [
            "SystemForCrossDomainIdentityManagementServiceIncompatible",
            "TheOrgWikiEntryConflict",
        ]
    )
    assert list(latest["failures"]) == list(grouped["failures"]) == [1, 2]
    assert charts(at), "events-over-time chart missing"


def test_overview_status_header_equals_job_status_report(env: Path, inputs: Inputs) -> None:
    at = _app()
    job = report("job-header", inputs).frame.iloc[0]
    texts = [t.value for t in at.text]
    assert f"{job['app']}  ·  {job['job_id']}" in texts
    assert f"{job['cycle_kind']} · {job['cycle_id']}" in texts
    assert job["state"] == "Active"
    assert any("State: Active" in md.value for md in at.markdown)
    # The fixture's last cycle ended 2026-11-20 08:10; 40 min later it was due: at 09:00 next
    # day it is 24 h 10 min overdue.
    assert job["overdue_min"] == 24 * 60 + 10
    assert any(e.value == "Overdue by 24 h 10 min" for e in at.error)
    assert f"{int(job['objects_in_scope'])} users and groups\nEntra reports 7 entitled" in texts
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    assert links["Provisioning"] == job["provisioning_url"]
    assert links["Provisioning"].endswith(f"/ProvisioningActivity/objectId/{fx.SP}")
    assert links["This cycle's events"] == "events?cycle=cycle-3"


def test_events_page_finds_a_change_and_shows_its_details(env: Path, inputs: Inputs) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("screens/events.py")
    at.query_params["change"] = "ch-009"
    at.run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    expected = report("events", inputs, change="ch-009")
    log = frames(at)[0]
    assert list(log["id"]) == list(expected.frame["id"]) == ["ev-009"]
    details = expected.data["details"]
    assert details["troubleshooting"]["error_code"] == "TheOrgWikiEntryConflict"
    texts = [t.value for t in at.text]
    assert details["troubleshooting"]["recommended_action"] in texts
    assert details["troubleshooting"]["fix_owner"] in texts
    assert "create · failure · Katherine Johnson → TheOrgWiki" in texts
    # A cycle link lists that cycle's events, newest first.
    at.text_input(key="events_change").set_value("").run()
    at.text_input(key="events_cycle").set_value("cycle-2").run()
    cycle = report("events", inputs, cycle="cycle-2").frame
    assert list(frames(at)[0]["id"]) == list(cycle["id"])
    assert at.query_params["cycle"] == "cycle-2" and "change" not in at.query_params


def test_sidebar_filters_change_the_numbers(env: Path, inputs: Inputs) -> None:
    at = _app()
    at.sidebar.multiselect(key="f_statuses").set_value(["failure"]).run()
    expected = report("summary", inputs, filters=Filters(statuses=("failure",))).data
    assert metrics(at)["Events"] == str(expected["events"]) == "3"
    # Time range: only the first day (cycle 1).
    at.sidebar.multiselect(key="f_statuses").set_value([]).run()
    at.sidebar.date_input[0].set_value((dt.date(2026, 11, 18), dt.date(2026, 11, 18)))
    at.run()
    day1 = Filters(until=pd.Timestamp("2026-11-19T00:00:00Z"))
    expected = report("summary", inputs, filters=day1).data
    assert metrics(at)["Events"] == str(expected["events"]) == "7"


def test_cycles_page_matches_cycles_report(env: Path, inputs: Inputs) -> None:
    at = _app("cycles")
    cycles = report("cycles", inputs).frame
    m = metrics(at)
    assert m["Cycles"] == str(len(cycles)) == "3"
    assert m["Initial cycles"] == "1"
    assert m["Median duration"] == f"{cycles['duration_s'].median() / 60:.1f} min"
    table = frames(at)[-1]
    assert list(table["cycle_id"]) == list(cycles["cycle_id"])
    assert list(table["kind"]) == ["initial", "incremental", "incremental"]
    assert len(charts(at)) == 4  # timeline, duration, throughput, gaps


def test_users_search_timeline_and_literal_names(env: Path, inputs: Inputs) -> None:
    at = _app("users")
    assert any("Pick a user" in i.value for i in at.info)  # nothing preselected
    at.text_input(key="users_query").input("xss@contoso").run()
    matches = frames(at)[0]
    assert list(matches["source_name"]) == [fx.XSS_NAME]
    assert at.query_params["user"] == "xss@contoso.com"  # the URL names the user
    timeline = report("timeline", inputs, user="obj-u3").frame
    m = metrics(at)
    assert m["Events"] == str(len(timeline)) == "2"
    assert m["Failures"] == "0"
    # The hostile name is only ever shown as text, never as Markdown/HTML.
    assert fx.XSS_NAME in at.text[0].value
    for md in at.markdown:
        assert "<img" not in md.value and "**bold**" not in md.value
    mods = next(f for f in frames(at) if "old_value" in f.columns)
    assert list(mods["new_value"]) == [fx.XSS_NAME, "True"]
    wiki = next(f for f in frames(at) if "request_id" in f.columns and "method" in f.columns)
    assert list(wiki["request_id"]) == ["r-003", "r-012"]  # its POST and its PATCH
    # The user's correlation rows are exactly the full report's rows for their events.
    full = report("correlation", inputs).frame
    mine = full[full["event_id"].isin(timeline["id"])]
    corr = next(f for f in frames(at) if "verdict" in f.columns)
    assert list(corr["event_id"]) == list(mine["event_id"]) == ["ev-003", "ev-011"]
    assert list(corr["verdict"]) == list(mine["verdict"]) == ["both_ok", "both_ok"]
    assert [list(r) for r in corr["wiki_request_ids"]] == [["r-003"], ["r-012"]]
    labels = [b.label for b in at.get("download_button")]
    assert "Download support pack (zip)" in labels and "Download support pack (Excel)" in labels


def _callout(at: AppTest) -> str:
    alerts = [*at.success, *at.error, *at.warning]
    return next(a.value for a in alerts if "Owner" in a.value or "wiki" in a.value)


def test_users_diagnosis_callout_says_the_reports_answer(env: Path, inputs: Inputs) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["user"] = "katherine@contoso.com"
    at.run()
    at.switch_page("screens/users.py").run()
    at.query_params["user"] = "katherine@contoso.com"
    at.run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    m = metrics(at)
    assert m["Failures"] == "2"
    assert m["Last status"] == "failure"
    events = next(f for f in frames(at) if "failed_step" in f.columns)
    assert int((events["status"] == "failure").sum()) == 2  # the tile agrees with the timeline
    diag = report("diagnosis", inputs, user="katherine@contoso.com").data
    # What a person reads: without the escapes and the invisible joiners that stop autolinks.
    text = _callout(at).replace("\\", "").replace(WORD_JOINER, "")
    assert at.error, "a failed user's callout is red"
    for key in ("headline", "wiki_line", "fix_line", "owner_line", "when_line"):
        assert diag[key] and diag[key] in text, key
    assert diag["verdict"] == "failed"
    assert diag["fix_owner"] and diag["recommended_fix"]
    assert "409" in diag["wiki_line"]


def test_users_page_survives_a_selection_without_wiki_requests(env: Path) -> None:
    at = _app("users")
    at.sidebar.multiselect(key="f_statuses").set_value(["skipped"])
    at.sidebar.toggle(key="f_hide_noise").set_value(False)
    at.run()
    at.text_input(key="users_query").input("oos@contoso.com").run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    assert metrics(at)["Last status"] == "skipped"  # the out-of-scope user, shown as noise


def test_failures_page_matches_failures_and_skips_reports(env: Path, inputs: Inputs) -> None:
    at = _app("failures")
    failures = report("failures", inputs).frame
    m = metrics(at)
    assert m["Failed events"] == str(int(failures["events"].sum())) == "3"
    assert m["Error codes"] == str(len(failures)) == "2"
    table = next(f for f in frames(at) if "error_code" in f.columns and "owner" in f.columns)
    assert list(table["error_code"]) == list(failures["error_code"])
    assert list(table["events"]) == list(failures["events"])
    # Out-of-scope skip is noise: hidden by default, shown once the toggle is off.
    assert not any("skip_reason" in f.columns for f in frames(at))
    at.sidebar.toggle(key="f_hide_noise").set_value(False).run()
    skips = next(f for f in frames(at) if "skip_reason" in f.columns)
    assert list(skips["skip_reason"]) == ["NotEffectivelyEntitled"]


def test_coverage_page_counts_each_verdict(env: Path, inputs: Inputs) -> None:
    at = _app("coverage")
    coverage = report("coverage", inputs).frame
    counts = coverage["verdict"].value_counts()
    labels = [t.label for t in at.tabs]
    for verdict in ("provisioned", "failed", "orphaned"):
        assert f"{verdict} ({int(counts.get(verdict, 0)):,})" in labels
    provisioned = frames(at)[0]
    assert sorted(provisioned["principal_id"]) == sorted(
        coverage.loc[coverage["verdict"] == "provisioned", "principal_id"]
    )


def test_estimate_page_matches_estimate_and_scales_with_scope(env: Path, inputs: Inputs) -> None:
    at = _app("estimate")
    est = report("estimate", inputs).data
    m = metrics(at)
    assert (
        at.caption[1].value
        == f"Estimating for {est['objects_in_scope']} objects."
        == ("Estimating for 8 objects.")
    )
    nxt = est["next_incremental_at"]
    start = next(x for x in at.metric if x.label == "Expected start")
    assert (start.value, start.delta) == (nxt.strftime("%H:%M UTC"), nxt.strftime("%a %Y-%m-%d"))
    assert m["Documented slowest"] == f"{60 * est['docs_max_minutes']:.0f} s"
    at.number_input(key="estimate_scope").set_value(80_000).run()
    m = metrics(at)
    # 0.01 to 0.08 minutes per object: 800 to 6,400 minutes.
    assert (m["Documented fastest"], m["Documented slowest"]) == ("13 h 20 min", "4.4 days")


def test_scim_traffic_page_counts_requests(env: Path, inputs: Inputs) -> None:
    at = _app("scim_traffic")
    req = inputs.scim_requests
    m = metrics(at)
    assert m["Requests"] == str(len(req)) == "13"
    assert m["Throttled (429)"] == str(int((req["status_code"] == 429).sum())) == "2"
    assert m["Errors (≥ 400)"] == str(int((req["status_code"] >= 400).sum()))


def test_export_page_previews_the_report(env: Path, inputs: Inputs) -> None:
    at = _app("export")
    failures = report("failures", inputs).frame
    preview = frames(at)[0]
    assert list(preview["error_code"]) == list(failures["error_code"])
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON", "Download Excel (XLSX)"]
    at.selectbox(key="export_report").set_value("summary").run()
    assert not at.exception
    preview = frames(at)[0]
    row = preview.set_index("key").loc["events", "value"]
    assert int(row) == 12
    # events_flat is offered, with the same rows as the CLI's `provlens export events_flat`.
    from reports.export import flat_events

    at.selectbox(key="export_report").set_value("events_flat").run()
    assert not at.exception
    flat = frames(at)[0]
    assert list(flat["id"]) == list(flat_events(inputs)["id"])
    assert "steps" in flat.columns


def test_export_rounds_figures() -> None:
    from reports import ReportResult
    from reports.export import render, rounded_result

    raw = ReportResult(
        frame=pd.DataFrame({"rate": [48.495239999999995]}),
        data={"estimate_minutes_p50": 48.495239999999995, "nested": {"x": 1.23456}},
    )
    out = rounded_result(raw)
    assert out.frame is not None and out.frame["rate"].tolist() == [48.495]
    assert out.data == {"estimate_minutes_p50": 48.495, "nested": {"x": 1.235}}
    assert b"48.495," not in render("r", out, "csv") and b"48.495" in render("r", out, "csv")


def test_empty_store_shows_guidance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVLENS_STORE", str(tmp_path / "nothing-here"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [s.value for s in at.main.subheader] == ["No provisioning data in this store yet"]
    assert "provlens ingest graph" in at.code[0].value
    assert [b.label for b in at.button if b.label == "Load the demo"]
    assert not at.metric and not at.dataframe


def test_load_the_demo_switches_to_the_demo_store_and_labels_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard import ui

    demo = tmp_path / "demo-store"

    def fake_demo() -> Path:  # what `provlens demo --no-dashboard` leaves behind
        fx.build_store(demo, origin="demo")
        return demo

    monkeypatch.setattr(ui, "_run_demo", fake_demo)
    monkeypatch.setenv("PROVLENS_STORE", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    next(b for b in at.button if b.label == "Load the demo").click().run()
    assert not at.exception
    assert metrics(at)["Events"] == "12"
    assert "DEMO DATA" in at.sidebar.warning[0].value
    assert any("DEMO DATA" in md.value for md in at.main.markdown), "page label missing"


AUTH = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "microsoft": {
            "client_id": "c",
            "client_secret": "s",
            "server_metadata_url": "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration",
        },
    },
    "provlens": {"allowed_users": ["Alice@Contoso.com"], "allowed_groups": ["gid-wiki-admins"]},
}


def _signed_in(user: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets = AUTH
    at.user = {"is_logged_in": True, **user}
    return at.run()


def test_signed_in_user_not_on_allow_list_sees_no_data(env: Path) -> None:
    at = _signed_in({"email": "mallory@contoso.com", "groups": ["gid-other"]})
    assert not at.exception
    assert "not on this dashboard's allow-list" in at.error[0].value
    assert not at.metric and not at.dataframe and not charts(at)
    assert not at.get("download_button")
    assert not at.sidebar.multiselect  # no filters, no store details either


def test_allowed_user_and_group_see_data(env: Path) -> None:
    at = _signed_in({"email": "alice@contoso.com"})
    assert metrics(at)["Events"] == "12"
    at = _signed_in({"email": "bob@contoso.com", "groups": ["gid-wiki-admins"]})
    assert metrics(at)["Events"] == "12"


def test_signed_out_user_gets_the_sign_in_button(env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets = AUTH
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with Microsoft"]
    assert not at.metric


def test_one_event_timeline_gets_a_readable_axis(env: Path) -> None:
    import json

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("screens/users.py").run()
    at.sidebar.toggle(key="f_hide_noise").set_value(False).run()
    at.text_input(key="users_query").input("oos@contoso.com").run()
    assert not at.exception
    assert metrics(at)["Events"] == "1"
    spec = json.loads(charts(at)[0].proto.spec)
    assert spec["usermeta"] == {"provlens": "users_timeline"}
    domain = spec["encoding"]["x"]["scale"]["domain"]
    lo, hi = (pd.Timestamp(v) for v in domain)
    assert hi - lo >= pd.Timedelta(hours=2)  # not a sub-millisecond axis around one point


def test_estimate_says_to_widen_narrowed_dates_and_that_the_run_is_overdue(env: Path) -> None:
    at = _app("estimate")
    assert not any("widen the time range" in w.value for w in at.warning)
    # The fixture's next run was due 2026-11-20 08:50; at 2026-11-21 09:00 it is overdue.
    assert any(e.value.startswith("Overdue by 24 h 10 min: TheOrgWiki") for e in at.error)
    at.sidebar.date_input[0].set_value((dt.date(2026, 11, 18), dt.date(2026, 11, 18))).run()
    assert not at.exception
    assert any("widen the time range" in w.value for w in at.warning)


def test_failures_page_opens_with_the_answer_in_words(env: Path, inputs: Inputs) -> None:
    at = _app("failures")
    failures = report("failures", inputs).frame
    kpi = report("failure-kpis", inputs).data
    lead = next(t.value for t in at.text if "failed events across" in t.value)
    top = failures.iloc[0]
    assert lead.startswith(
        f"{kpi['failed_events']} failed events across {kpi['error_codes']} error codes "
        f"touched {kpi['users_with_failure']} users. The most frequent, {top['error_code']}, "
    )
    assert f"{int(top['events']) / kpi['failed_events']:.0%} of them" in lead
    # Graph-read logs carry no envelope: the Microsoft's-view table is not drawn.
    assert "Microsoft's view" not in [h.value for h in at.subheader]


def test_failures_page_shows_microsofts_view_beside_provlens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = fx.build_store(tmp_path / "store", origin="log_analytics")
    ev = store.read("events")
    # The workbooks' view: the envelope says Success around every record, whatever its status.
    with store.batch(source="file", detail="envelope") as b:
        b.add({"events": ev.assign(envelope_result_type="Success")})
    monkeypatch.setenv("PROVLENS_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    at = _app("failures")
    assert "Microsoft's view" in [h.value for h in at.subheader]
    table = next(f for f in frames(at) if "result_type" in f.columns)
    counts = ev["status"].value_counts()
    assert list(table["result_type"]) == ["Success"]
    for status, n in counts.items():
        assert int(table.loc[0, status]) == int(n)
    assert int(table.loc[0, "total"]) == len(ev)
