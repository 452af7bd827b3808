"""Filters, Inputs, the registry and the noise mask."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest.schema import TABLES
from reports import REPORTS, Filters, Inputs, run_report
from reports.noise import noise_mask
from tests.support.frames import J1, J2, events, modified_properties, ts, world


def test_inputs_fill_missing_tables_with_empty_canonical_frames():
    inputs = Inputs.from_tables({"events": events([{"activity_at": "2026-11-20T00:00:00Z"}])})
    assert len(inputs.events) == 1
    assert list(inputs.sync_jobs.columns) == TABLES["sync_jobs"].names
    assert len(inputs.scim_requests) == 0
    with pytest.raises(KeyError):
        Inputs.from_tables({"nope": pd.DataFrame()})


def test_filters_cut_events_by_half_open_time_range_job_action_and_status():
    ev = world().events
    f = Filters(since="2026-11-20T00:00:00Z", until="2026-11-20T01:00:00Z")
    assert f.apply_events(ev)["id"].tolist() == ["e2", "e3", "e4", "e5"]
    assert Filters(job_ids=(J2,)).apply_events(ev)["id"].tolist() == ["e4", "e5"]
    assert Filters(actions=("update",), statuses=("success",)).apply_events(ev)["id"].tolist() == [
        "e4",
        "e7",
        "e10",
    ]
    # naive times mean UTC
    assert Filters(since="2026-11-20T01:00:00").since == ts("2026-11-20T01:00:00Z")


def test_filters_apply_to_inputs_keeps_children_of_kept_events_only():
    sel = Filters(job_ids=(J1,), since="2026-11-20T00:00:00Z").apply_inputs(world())
    assert sel.events["id"].tolist() == ["e2", "e3", "e6", "e7", "e8", "e9", "e10"]
    assert sorted(sel.modified_properties["event_id"]) == ["e10", "e7"]
    assert sel.steps["event_id"].tolist() == ["e2", "e2"]
    assert sel.sync_jobs["job_id"].tolist() == [J1]


def test_filters_by_service_principal_narrow_scope_tables():
    sel = Filters(service_principal_ids=("other",)).apply_inputs(world())
    assert sel.events.empty and sel.assignments.empty and sel.group_members.empty
    assert len(sel.scim_resources) == 6  # the wiki side is not per app


def test_noise_mask_marks_out_of_scope_skips_and_noop_account_disabled_updates():
    w = world()
    mask = noise_mask(w.events, w.modified_properties)
    assert w.events.loc[mask, "id"].tolist() == ["e3", "e7"]


def test_account_disabled_that_changes_or_comes_with_other_changes_is_not_noise():
    ev = events(
        [
            {"activity_at": "2026-11-20T00:00:00Z", "action": "update"},  # e1 real change
            {"activity_at": "2026-11-20T00:00:00Z", "action": "update"},  # e2 with displayName
            {"activity_at": "2026-11-20T00:00:00Z", "action": "update"},  # e3 same old/new
            {"activity_at": "2026-11-20T00:00:00Z", "action": "update", "status": "failure"},
            {"activity_at": "2026-11-20T00:00:00Z", "status": "skipped", "skip_reason": "Other"},
            {
                "activity_at": "2026-11-20T00:00:00Z",
                "status": "skipped",
                "skip_reason": "notEffectivelyEntitled",
            },
        ]
    )
    mp = modified_properties(
        [
            {
                "event_id": "e1",
                "name": "accountDisabled",
                "old_value": "False",
                "new_value": "True",
            },
            {"event_id": "e2", "name": "accountDisabled", "new_value": "False"},
            {"event_id": "e2", "name": "displayName", "new_value": "X"},
            {
                "event_id": "e3",
                "name": "AccountDisabled",
                "old_value": "false",
                "new_value": "False",
            },
            {"event_id": "e4", "name": "accountDisabled", "new_value": "False"},
        ]
    )
    assert ev.loc[noise_mask(ev, mp), "id"].tolist() == ["e3", "e6"]


def test_registry_names_every_report_with_a_loadable_function():
    expected = {
        "summary",
        "cycles",
        "users",
        "timeline",
        "failures",
        "skips",
        "coverage",
        "estimate",
        "quarantine-risk",
        "correlation",
        "scim-traffic",
        "overview",
        # The dashboard's views (reports.diagnosis, events_log, job_status, recent_failures).
        "diagnosis",
        "events",
        "job-header",
        "recent-failures",
        "access-time",
        "access-time-summary",
        "job-status",
        "alerts",
        # The pages' small figures (reports.pages), so the CLI reproduces every one.
        "events-over-time",
        "filter-options",
        "cycle-kpis",
        "failure-kpis",
        "affected-users",
        "user-search",
        "user-steps",
        "user-changes",
        "user-wiki-requests",
        "coverage-funnel",
        "scim-summary",
        "scim-status-codes",
        "scim-rate",
        "scim-requests",
        "estimate-for",
    }
    assert set(REPORTS) == expected
    assert REPORTS["summary"].shape == "object" and REPORTS["estimate"].shape == "object"
    assert REPORTS["users"].noise and not REPORTS["cycles"].noise
    for name, spec in REPORTS.items():
        assert set(spec.tables) <= set(TABLES), name
        if name not in ("correlation", "scim-traffic"):  # owned by the SCIM engineer
            assert callable(spec.load())


def test_run_report_rejects_unknown_names_and_does_not_mutate_inputs():
    w = world()
    before = {name: getattr(w, name).copy() for name in TABLES}
    for name in (
        "summary",
        "cycles",
        "users",
        "failures",
        "skips",
        "coverage",
        "estimate",
        "quarantine-risk",
    ):
        run_report(name, w)
    run_report("timeline", w, user="u2")
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(w, name), before[name])
    with pytest.raises(KeyError):
        run_report("nope", w)


@pytest.mark.parametrize(
    "values",
    [
        pd.array([f"v{i}" if i % 7 else None for i in range(6000)], dtype="str"),
        np.arange(6000),
        np.arange(6000) % 2 == 0,
        pd.array(range(6000), dtype="Int64"),
    ],
)
def test_text_label_lookup_by_arrow_is_pandas_reindex(values):
    from reports.inputs import reindex

    index = pd.Index([f"k{i}" for i in range(6000)], dtype="str")
    series = pd.Series(values, index=index, name="x")
    keys = np.array([f"k{i}" for i in range(5999, -1, -2)] + ["nope", None] * 1000, dtype=object)
    expected = series.reindex(keys)
    got = reindex(series, keys)
    pd.testing.assert_series_equal(got, expected)
    everything = np.array([f"k{i}" for i in range(6000)], dtype=object)
    pd.testing.assert_series_equal(reindex(series, everything), series.reindex(everything))


def test_scoping_filter_text_is_joined_per_event_in_order():
    from ingest.schema import empty_frame
    from reports.model import event_noise
    from tests.support import frames as F

    skipped = F.events(
        [
            {"id": e, "status": "skipped", "skip_reason": "NotEffectivelyEntitled"}
            for e in ("e1", "e2", "e3", "e4")
        ]
    )
    failed = '"Scoping filter evaluation passed":"False"'
    steps = F.frame(
        "steps",
        [
            # e1: the name is in its second step; the first step's clause comes first in the text
            {"event_id": "e1", "position": 1, "description": "x", "details": '{"dept.x":1}'},
            {"event_id": "e2", "position": 1, "description": failed, "details": None},
            {"event_id": "e1", "position": 2, "description": failed, "details": None},
            {"event_id": "e1", "position": 3, "description": "scoping filter 'B'", "details": ""},
            # e3: one step says the object is not assigned: a skip of an unassigned user
            {"event_id": "e3", "position": 1, "description": failed, "details": None},
            {"event_id": "e3", "position": 2, "description": '"IsAssigned":"False"'},
            # e4: the phrase spans two steps' texts, joined with a space
            {"event_id": "e4", "position": 1, "description": '"scoping filter evaluation passed"'},
            {"event_id": "e4", "position": 2, "description": ": false"},
        ],
    )
    part = event_noise(skipped, steps, empty_frame("modified_properties"))
    got = part.set_index("event_id")
    named = {k: None if pd.isna(v) else v for k, v in got["excluded_by"].items()}
    assert named == {"e1": "B", "e2": "(unnamed)", "e3": None, "e4": "(unnamed)"}
    # An excluded event is an answer, not noise; e3 is an out-of-scope skip (noise).
    assert got["noise"].to_dict() == {"e1": False, "e2": False, "e3": True, "e4": False}
