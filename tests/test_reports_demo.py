"""Reports on the demo simulator's data, checked against its ground truth (scenario.json)."""

from __future__ import annotations

import pandas as pd
import pytest

from ingest.schema import TABLES
from reports import Inputs, run_report

demo_run = pytest.importorskip("demo.run")
demo_scenario = pytest.importorskip("demo.scenario")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ingest.store import Store

    path = tmp_path_factory.mktemp("demo") / "demo-store"
    result = demo_run.build(demo_scenario.Scenario(users=500, days=2, seed=7), path)
    store = Store(path)
    inputs = Inputs.from_tables({name: store.read(name) for name in TABLES})
    return inputs, result.truth


def test_initial_cycle_estimate_within_documented_bounds_and_rate_within_ten_percent(demo):
    inputs, truth = demo
    end = pd.Timestamp(truth["window"]["end"])
    data = run_report("estimate", inputs, now=end).data
    assert data["objects_in_scope"] == truth["scope_at_end"]["objects_in_scope"]
    assert data["docs_min_minutes"] <= data["estimate_minutes_p50"] <= data["docs_max_minutes"]
    assert data["docs_min_minutes"] <= data["estimate_minutes_p90"] <= data["docs_max_minutes"]
    configured = truth["rate"]["objects_per_min"]
    assert data["observed_objects_per_min"] == pytest.approx(configured, rel=0.10)
    cycles = run_report("cycles", inputs).frame
    initial = cycles.loc[cycles["kind"] == "initial"]
    assert initial["cycle_id"].tolist() == [truth["initial_cycle"]["cycle_id"]]
    assert float(initial["objects_per_min"].iloc[0]) == pytest.approx(configured, rel=0.10)


def test_summary_failures_skips_and_noise_match_the_ground_truth(demo):
    inputs, truth = demo
    summary = run_report("summary", inputs).data
    assert summary["events"] == truth["events"]["total"]
    assert summary["by_action_status"] == truth["events"]["by_action_status"]
    failures = run_report("failures", inputs).frame.set_index("error_code")
    for expected in truth["failures"].values():
        if expected["events"]:
            row = failures.loc[expected["error_code"]]
            assert (row["events"], row["objects"]) == (expected["events"], expected["objects"])
    noise = truth["noise"]
    # DESIGN "one-user answers": a scoping-filter skip of an assigned user is an answer, not
    # noise; only the out-of-scope (not entitled) skips are hidden.
    out_of_scope = truth["skips"]["not_entitled"]["events"]
    filtered = truth["skips"]["scoping_filter"]["events"]
    assert noise["skip_events"] == out_of_scope + filtered
    assert run_report("users", inputs).hidden_noise == out_of_scope + noise["noop_update_events"]
    skips = run_report("skips", inputs)
    assert skips.hidden_noise == out_of_scope
    shown = skips.frame.set_index("excluded_by")
    assert shown.loc["Exclude contractors", "events"] == filtered
    assert not shown.loc["Exclude contractors", "noise"]


def test_coverage_finds_the_wiki_mismatches_the_simulator_planted(demo):
    inputs, truth = demo
    table = run_report("coverage", inputs).frame
    orphans = table.loc[table["verdict"] == "orphaned", "wiki_id"].tolist()
    assert orphans == truth["wiki"]["orphan_user_ids"]
    missing = table.loc[table["verdict"] == "missing_in_wiki", "principal_id"].tolist()
    assert missing == truth["wiki"]["entra_only_user_ids"]
    nested = int((table["scope_via"] == "nested_group").sum())
    assert nested == truth["scope_at_end"]["nested_group_users_not_in_scope"]
