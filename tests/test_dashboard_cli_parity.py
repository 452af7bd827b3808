"""Every page shows what `provlens report NAME --format json` says on the same store.

One store (the fixture tenant plus alerts), one reference time; each page runs in AppTest and one
of its figures (a tile, a chart series, a table) is compared with the CLI's JSON of the report
the page asks by name. The CLI runs as a subprocess, once per report and parameters.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.e2e import fixture_data as fx
from tests.test_dashboard_alerts import _extras

config.set_option("client.showErrorDetails", "full")

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "store"
    store = fx.build_store(path)
    with store.batch(source="file", detail="parity test extras") as b:
        b.add(_extras())
        b.replace_groups("assignments", [fx.SP])
    return path


@functools.cache
def _cli(store: str, name: str, *args: str) -> Any:
    command = [sys.executable, "-m", "provlens", "--store", store, "--now", fx.NOW, "report"]
    done = subprocess.run(
        [*command, name, "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli(store: Path, name: str, *args: str) -> Any:
    """Return ``provlens report NAME --format json`` on ``store`` at the fixture's time."""
    return _cli(str(store), name, *args)


def cli_rows(store: Path, name: str, *args: str) -> pd.DataFrame:
    return pd.DataFrame(cli(store, name, *args))


@pytest.fixture
def app(store_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVLENS_STORE", str(store_path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)

    def open_page(page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=90)
        at.run()
        if page:
            at.switch_page(f"screens/{page}.py").run()
        assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
        return at

    return open_page


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _values(value: Any) -> list[Any]:
    """Return a Plotly data array as a list (typed arrays come base64-encoded)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def chart(at: AppTest, key: str) -> list[dict[str, Any]]:
    """Return the traces of the chart drawn with ``key`` (ui.chart)."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, f"no chart {key!r}"
    return list(json.loads(found[0].proto.spec)["data"])


def vega_series(at: AppTest, key: str, by: str) -> dict[tuple[str, str], float]:
    """Return {(``by`` value, bucket start as naive UTC ISO): count} of the Vega-Lite chart
    drawn with ``key`` (ui.vega), from the data the browser receives."""
    import pyarrow as pa

    found = [
        c
        for c in at.get("vega_lite_chart")
        if json.loads(c.proto.spec).get("usermeta") == {"provlens": key}
    ]
    assert found, f"no chart {key!r}"
    data = pa.ipc.open_stream(found[0].proto.data.data).read_pandas()
    return {
        (str(r[by]), pd.Timestamp(r["when"].removesuffix(" UTC")).isoformat()): float(r["count"])
        for _, r in data.iterrows()
    }


def series(traces: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Return {(trace name, x as naive UTC ISO): y} over every trace."""
    out: dict[tuple[str, str], float] = {}
    for t in traces:
        for x, y in zip(_values(t["x"]), _values(t["y"]), strict=True):
            out[(str(t.get("name")), pd.Timestamp(x).tz_localize(None).isoformat())] = float(y)
    return out


def cli_series(
    rows: pd.DataFrame, by: str, x: str = "bucket", y: str = "count"
) -> dict[tuple[str, str], float]:
    """Return {(``by`` value, ``x`` as naive UTC ISO): ``y``} over the CLI's rows."""
    return {
        (str(r[by]), pd.Timestamp(r[x]).tz_localize(None).isoformat()): float(r[y])
        for _, r in rows.iterrows()
    }


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def test_overview_tiles_chart_and_failures_equal_the_cli(app, store_path: Path) -> None:
    at = app()
    kpi = cli(store_path, "overview")
    m = metrics(at)
    assert m["Events"] == f"{kpi['events']:,}" == "12"
    assert m["Failures"] == f"{kpi['failures']:,}" == "3"
    assert m["Objects"] == f"{kpi['source_objects']:,}"
    assert m["Cycles"] == f"{kpi['cycles']:,}" == "3"
    assert m["Success rate"] == f"{100 * kpi['success_rate']:.1f} %" == "72.7 %"
    assert m["Quarantine risk"] == kpi["quarantine_risk"]
    shown = vega_series(at, "overview_events", "status")
    expected = cli_series(cli_rows(store_path, "events-over-time"), "status")
    assert shown == expected
    assert sum(shown.values()) == 12
    latest = table_with(at, "error_code", "failures", "source_upn")
    grouped = cli_rows(store_path, "recent-failures")
    assert latest["error_code"].tolist() == grouped["error_code"].tolist()
    assert latest["failures"].tolist() == grouped["failures"].tolist() == [1, 2]
    # The status header is job-header's answer, next run included.
    header = cli_rows(store_path, "job-header")
    assert int(header.iloc[0]["overdue_min"]) == 24 * 60 + 10
    assert any(e.value.startswith("Overdue by 24 h 10 min") for e in at.error)


def test_cycles_tiles_and_table_equal_the_cli(app, store_path: Path) -> None:
    at = app("cycles")
    kpi = cli(store_path, "cycle-kpis")
    m = metrics(at)
    assert m["Cycles"] == f"{kpi['cycles']:,}" == "3"
    assert m["Initial cycles"] == f"{kpi['initial']:,}" == "1"
    assert m["Median duration"] == "20.0 min" and kpi["median_duration_s"] == 1200.0
    assert kpi["longest_gap_s"] == 85200.0 and m["Longest gap"] == "23 h 40 min"
    table = table_with(at, "cycle_id", "kind", "events")
    rows = cli_rows(store_path, "cycles")
    assert table["cycle_id"].tolist() == rows["cycle_id"].tolist()
    assert table["events"].tolist() == rows["events"].tolist()


def test_failures_tiles_trend_and_users_equal_the_cli(app, store_path: Path) -> None:
    at = app("failures")
    kpi = cli(store_path, "failure-kpis")
    m = metrics(at)
    assert m["Failed events"] == f"{kpi['failed_events']:,}" == "3"
    assert m["Error codes"] == f"{kpi['error_codes']:,}" == "2"
    assert m["Users with a failure"] == f"{kpi['users_with_failure']:,}" == "2"
    trend = cli_rows(
        store_path, "events-over-time", "--param", "by=error_code", "--param", "status=failure"
    )
    assert series(chart(at, "failures_trend")) == cli_series(trend, "error_code")
    affected = table_with(at, "source_upn", "failures", "last_status")
    rows = cli_rows(store_path, "affected-users")
    assert affected["source_upn"].tolist() == rows["source_upn"].tolist()
    assert affected["failures"].tolist() == rows["failures"].tolist()


def test_coverage_funnel_and_verdicts_equal_the_cli(app, store_path: Path) -> None:
    at = app("coverage")
    funnel = cli_rows(store_path, "coverage-funnel")
    trace = chart(at, "coverage_funnel")[0]
    assert _values(trace["y"]) == funnel["stage"].tolist()
    assert _values(trace["x"]) == funnel["users"].tolist() == [7, 7, 6, 6]
    verdicts = cli_rows(store_path, "coverage")["verdict"].value_counts()
    bars = chart(at, "coverage_verdicts")[0]
    shown = dict(zip(_values(bars["y"]), _values(bars["x"]), strict=True))
    assert shown == {v: int(verdicts.get(v, 0)) for v in shown}
    assert shown["provisioned"] == int(verdicts["provisioned"]) > 0


def test_users_search_steps_and_wiki_requests_equal_the_cli(app, store_path: Path) -> None:
    at = app("users")
    at.text_input(key="users_query").input("katherine@contoso.com").run()
    assert not at.exception
    found = table_with(at, "source_upn", "last_status", "failures")
    rows = cli_rows(store_path, "user-search", "--param", "query=katherine@contoso.com")
    assert found["source_upn"].tolist() == rows["source_upn"].tolist()
    assert rows["user_key"].tolist() == ["obj-u6"]
    steps = table_with(at, "position", "name", "description")
    cli_steps = cli_rows(store_path, "user-steps", "--user", "obj-u6")
    assert steps["name"].tolist() == cli_steps["name"].tolist()
    assert len(cli_steps) > 0
    wiki = table_with(at, "received_at", "status_code", "method")
    cli_wiki = cli_rows(store_path, "user-wiki-requests", "--user", "obj-u6")
    assert wiki["status_code"].tolist() == cli_wiki["status_code"].tolist()
    assert 409 in cli_wiki["status_code"].tolist()


def test_events_log_equals_the_cli(app, store_path: Path) -> None:
    at = app("events")
    table = table_with(at, "activity_at", "status", "change_id")
    rows = cli_rows(store_path, "events")
    assert table["change_id"].tolist() == rows["change_id"].tolist()
    assert table["status"].tolist() == rows["status"].tolist()
    assert len(rows) == 11  # noise hidden, as on the page


def test_alerts_tables_equal_the_cli(app, store_path: Path) -> None:
    at = app("alerts")
    rows = cli_rows(store_path, "alerts")
    firing, history = (d.value for d in at.dataframe)
    expected = rows.loc[rows["state"] == "firing"]
    assert firing["rule"].tolist() == expected["rule"].tolist() == ["access_slo", "quarantine"]
    assert history["rule"].tolist() == rows["rule"].tolist()
    assert history["subject"].tolist() == rows["subject"].tolist()
    assert len(rows) == 3
    assert metrics(at)["Firing"] == str(len(expected))


def test_scim_traffic_tiles_and_rate_equal_the_cli(app, store_path: Path) -> None:
    at = app("scim_traffic")
    kpi = cli(store_path, "scim-summary")
    m = metrics(at)
    assert m["Requests"] == f"{kpi['requests']:,}" == "13"
    assert m["Throttled (429)"] == f"{kpi['throttled']:,}" == "2"
    rate = cli_rows(store_path, "scim-rate")
    markers = [t for t in chart(at, "scim_rate") if t.get("name") in set(rate["status"])]
    shown = series(markers)
    assert shown == cli_series(rate, "status", "period_start", "requests")
    assert sum(shown.values()) == 13


def test_estimate_tiles_equal_the_cli(app, store_path: Path) -> None:
    at = app("estimate")
    est = cli(store_path, "estimate-for")
    assert at.caption[1].value == f"Estimating for {est['objects_in_scope']} objects."
    at.number_input(key="estimate_scope").set_value(80_000).run()
    scaled = cli(store_path, "estimate-for", "--param", "objects=80000")
    assert scaled["docs_min_minutes"] == pytest.approx(800.0)
    assert metrics(at)["Documented fastest"] == "13 h 20 min"


def test_job_header_and_job_status_agree_on_the_next_run(store_path: Path) -> None:
    header = cli_rows(store_path, "job-header").set_index("job_id")
    status = cli_rows(store_path, "job-status").set_index("job_id")
    both = header.index.intersection(status.index)
    assert len(both) > 0
    for job in both:
        assert header.loc[job, "last_run_at"] == status.loc[job, "last_run_at"]
        assert header.loc[job, "next_run_at"] == status.loc[job, "next_run_due_at"]
    assert header.loc[fx.JOB, "next_run_at"] == "2026-11-20T08:50:00.000Z"


def test_job_header_is_the_same_for_every_time_range(store_path: Path) -> None:
    # The header says what each job is doing now: a range that cuts its last cycle in two, or
    # ends before it, shows the same last cycle, run and scope (the model's cycle, whole).
    whole = cli_rows(store_path, "job-header")
    row = whole.set_index("job_id").loc[fx.JOB]
    start, end = pd.Timestamp(row["cycle_started_at"]), pd.Timestamp(row["cycle_ended_at"])
    assert end > start
    middle = start + (end - start) / 2
    for cut in (("--since", middle.isoformat()), ("--until", start.isoformat())):
        pd.testing.assert_frame_equal(cli_rows(store_path, "job-header", *cut), whole)
