"""scim-traffic: requests per minute and per Entra cycle, status mix, latency quantiles, 429s."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import Filters, run_report
from reports.scim_traffic import COLUMNS, build
from tests.support import frames as F

T0 = pd.Timestamp("2026-11-20T10:00:00Z")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


REQUESTS = [
    # minute 10:00 — five requests, one throttled, one conflict
    {
        "request_id": "a",
        "received_at": at(1),
        "status_code": 200,
        "operation": "query",
        "latency_ms": 10.0,
    },
    {
        "request_id": "b",
        "received_at": at(2),
        "status_code": 201,
        "operation": "create",
        "latency_ms": 20.0,
    },
    {
        "request_id": "c",
        "received_at": at(3),
        "status_code": 409,
        "operation": "create",
        "latency_ms": 30.0,
        "scim_type": "uniqueness",
    },
    {
        "request_id": "d",
        "received_at": at(4),
        "status_code": 429,
        "operation": "patch",
        "latency_ms": 40.0,
    },
    {
        "request_id": "e",
        "received_at": at(59),
        "status_code": 204,
        "operation": "patch",
        "latency_ms": 50.0,
    },
    # minute 10:02 — one delete without latency, one request without status
    {"request_id": "f", "received_at": at(130), "status_code": 204, "operation": "delete"},
    {"request_id": "g", "received_at": at(131), "operation": "other", "latency_ms": 5.0},
    # an hour later, outside any cycle
    {
        "request_id": "h",
        "received_at": at(3600),
        "status_code": 500,
        "operation": "read",
        "latency_ms": 900.0,
    },
]
EVENTS = [
    {"id": "e1", "activity_at": at(5), "job_id": "scim.j1", "cycle_id": "c1"},
    {"id": "e2", "activity_at": at(60), "job_id": "scim.j1", "cycle_id": "c1"},
    {"id": "e3", "activity_at": at(250), "job_id": "scim.j1", "cycle_id": "c2"},
    {"id": "e4", "activity_at": at(7200), "job_id": "scim.j1", "cycle_id": "c3"},
]


def test_minute_rows():
    out = build(
        F.inputs(scim_requests=REQUESTS),
        Filters(),
        include_noise=False,
        now=None,
        granularity="minute",
    ).frame
    assert list(out.columns) == COLUMNS
    assert out["period_start"].tolist() == [at(0), at(120), at(3600)]
    first = out.iloc[0]
    assert (first["requests"], first["status_2xx"], first["status_4xx"]) == (5, 3, 2)
    assert (first["throttled_429"], first["conflict_409"]) == (1, 1)
    assert first["status_mix"] == "200:1 201:1 204:1 409:1 429:1"
    assert (first["creates"], first["updates"], first["reads"]) == (2, 2, 1)
    assert first["latency_p50_ms"] == pytest.approx(30.0)
    assert first["latency_p95_ms"] == pytest.approx(48.0)
    assert first["latency_p99_ms"] == pytest.approx(49.6)
    assert first["period_end"] == at(60) and first["requests_per_min"] == 5.0
    assert (first["first_at"], first["last_at"]) == (at(1), at(59))
    second = out.iloc[1]
    assert (second["status_unknown"], second["deletes"], second["other_ops"]) == (1, 1, 1)
    assert second["latency_p50_ms"] == pytest.approx(5.0)  # the one request with a latency
    assert out.iloc[2]["status_5xx"] == 1
    assert out["granularity"].unique().tolist() == ["minute"]
    assert out["cycle_id"].isna().all()


def test_cycle_rows_align_requests_by_time_window():
    out = build(
        F.inputs(events=EVENTS, scim_requests=REQUESTS),
        Filters(),
        include_noise=False,
        now=None,
        granularity="cycle",
    ).frame
    assert out["cycle_id"].tolist() == ["c1", "c2", "c3"]
    c1, c2, c3 = (out.iloc[i] for i in range(3))
    # c1 runs 10:00:05-10:01:00; ±120 s takes requests a..e and f (130 s) ...
    assert (c1["events"], c1["requests"]) == (2, 5)
    # ... but c2 (10:04:10, from 10:02:10 with slack) started later, so f and g go to c2.
    assert (c2["events"], c2["requests"], c2["status_unknown"]) == (1, 2, 1)
    assert (c3["events"], c3["requests"], c3["throttled_429"]) == (1, 0, 0)
    assert pd.isna(c3["latency_p50_ms"])
    assert c1["period_start"] == at(5) and c1["period_end"] == at(60)
    assert c1["requests_per_min"] == pytest.approx(5.0)  # under a minute counts as one
    assert c1["throttled_429"] == 1 and c1["status_mix"] == "200:1 201:1 204:1 409:1 429:1"
    assert out["job_id"].unique().tolist() == ["scim.j1"]


def test_both_granularities_through_the_registry_and_filters():
    inputs = F.inputs(events=EVENTS, scim_requests=REQUESTS)
    out = run_report("scim-traffic", inputs).frame
    assert out["granularity"].value_counts().to_dict() == {"minute": 3, "cycle": 3}
    cut = run_report("scim-traffic", inputs, Filters(since=at(100), until=at(3000))).frame
    minutes = cut.loc[cut["granularity"] == "minute"]
    assert minutes["period_start"].tolist() == [at(120)]
    assert cut.loc[cut["granularity"] == "cycle", "cycle_id"].tolist() == ["c2"]
    jobs = run_report("scim-traffic", inputs, Filters(job_ids=("other",))).frame
    assert (jobs["granularity"] == "minute").all()


def test_empty_inputs_and_bad_parameter():
    out = build(F.inputs(), Filters(), include_noise=False, now=None).frame
    assert out.empty and list(out.columns) == COLUMNS
    only_events = build(F.inputs(events=EVENTS), Filters(), include_noise=False, now=None).frame
    assert only_events["requests"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="granularity"):
        build(F.inputs(), Filters(), include_noise=False, now=None, granularity="second")


def test_large_frame_totals_add_up():
    from tests.test_correlation import _big

    events, requests = _big(20_000)
    events = events.assign(cycle_id=events["activity_at"].dt.floor("40min").astype(str), job_id="j")
    out = build(
        F.inputs(events=events, scim_requests=requests), Filters(), include_noise=False, now=None
    ).frame
    minutes = out.loc[out["granularity"] == "minute"]
    cycles = out.loc[out["granularity"] == "cycle"]
    assert minutes["requests"].sum() == len(requests)
    assert cycles["events"].sum() == len(events)
    # every request lies within its event's cycle window, so each lands in some cycle
    assert cycles["requests"].sum() == len(requests)
    assert (minutes["status_2xx"] + minutes["status_4xx"]).sum() == len(requests)
    assert minutes["conflict_409"].sum() == (requests["status_code"] == 409).sum()
    assert minutes["status_mix"].str.match(r"^(\d{3}:\d+)( \d{3}:\d+)*$").all()
