"""quarantine-risk against the documented escrow thresholds."""

from __future__ import annotations

import pandas as pd
import pytest

from ingest.schema import conform
from reports import run_report
from reports.quarantine import next_retry
from tests.support.frames import inputs, ts, world


def _bulk(job: str, failed: int, succeeded: int, reference: int = 0) -> pd.DataFrame:
    """Return one event per object: ``failed`` failures (the first ``reference`` on groups)."""
    n = failed + succeeded
    status = ["failure"] * failed + ["success"] * succeeded
    kind = ["group"] * reference + ["user"] * (n - reference)
    action = ["update"] * reference + ["create"] * (n - reference)
    return pd.DataFrame(
        {
            "id": [f"{job}-{i}" for i in range(n)],
            "activity_at": pd.Timestamp("2026-11-20T10:00:00Z"),
            "job_id": job,
            "source_id": [f"{job}-o{i}" for i in range(n)],
            "source_type": kind,
            "action": action,
            "status": status,
            "origin": "demo",
        }
    )


@pytest.mark.parametrize(
    ("failed", "succeeded", "reference", "risk", "flags"),
    [
        # the docs' worked examples
        (45_000, 0, 0, "over_threshold", (True, True, True, False)),
        (30_000, 5_000, 0, "over_threshold", (True, True, False, False)),
        (20_000, 100_000, 0, "low", (True, False, False, False)),
        # below the 5,000 minimum nothing is evaluated yet, however bad the rate
        (4_000, 0, 0, "approaching", (False, False, False, False)),
        # 31,000 user + 30,000 reference failures at a 24 % rate: only the 60,000 cap trips
        (61_000, 100_000, 30_000, "over_threshold", (True, False, False, True)),
    ],
)
def test_documented_thresholds(failed, succeeded, reference, risk, flags):
    data = inputs(events=conform("events", _bulk("j", failed, succeeded, reference)))
    row = run_report("quarantine-risk", data).frame.iloc[0]
    assert (row["failures"], row["successes"]) == (failed, succeeded)
    assert row["reference_failures"] == reference
    names = ("over_base", "over_proportion", "over_non_reference", "over_total")
    assert tuple(bool(row[n]) for n in names) == flags
    assert row["risk"] == risk


def test_reference_failures_count_toward_the_cap_but_not_the_rate():
    data = inputs(events=conform("events", _bulk("j", 6_000, 10_000, reference=2_000)))
    row = run_report("quarantine-risk", data).frame.iloc[0]
    assert (row["reference_failures"], row["non_reference_failures"]) == (2_000, 4_000)
    assert row["failure_rate"] == pytest.approx(4_000 / 14_000)
    assert bool(row["over_base"]) and not bool(row["over_proportion"])
    assert row["risk"] == "low"


def test_sample_tenant_counts_outstanding_failures_per_job():
    table = run_report("quarantine-risk", world()).frame.set_index("job_id")
    # j1: u2 failed then succeeded (not outstanding); u9 still failing
    assert table.loc["scim.j1", ["events", "failure_events", "failures", "successes"]].tolist() == [
        8,
        2,
        1,
        3,
    ]
    assert table.loc["scim.j1", "failure_rate"] == pytest.approx(0.25)
    assert table.loc["scim.j2", "failures"] == 0
    assert table["risk"].tolist() == ["low", "low"]
    assert table["status_code"].tolist() == ["Active", "Active"]


def test_quarantined_job_state_and_documented_retry_schedule():
    data = inputs(
        sync_jobs=[
            {
                "captured_at": "2026-11-20T12:00:00Z",
                "job_id": "q",
                "status_code": "Quarantine",
                "quarantine_reason": "EncounteredEscrowProportionThreshold",
                "quarantine_began": "2026-11-20T03:00:00Z",
            },
            {
                "captured_at": "2026-11-20T12:00:00Z",
                "job_id": "k",
                "status_code": "Quarantine",
                "quarantine_began": "2026-11-20T03:00:00Z",
                "quarantine_next_attempt": "2026-11-20T20:00:00Z",
            },
        ]
    )
    table = run_report("quarantine-risk", data, now=ts("2026-11-20T12:30:00Z")).frame
    table = table.set_index("job_id")
    assert table["risk"].tolist() == ["quarantined", "quarantined"]
    assert table.loc["q", "quarantine_reason"] == "EncounteredEscrowProportionThreshold"
    assert table.loc["q", "quarantine_next_attempt"] == ts("2026-11-20T15:00:00Z")  # began + 12 h
    assert table.loc["k", "quarantine_next_attempt"] == ts("2026-11-20T20:00:00Z")  # from Graph


def test_next_retry_schedule():
    began = pd.Series([ts("2026-11-01T00:00:00Z")] * 5)
    nows = [
        "2026-11-01T01:00:00Z",
        "2026-11-01T07:00:00Z",
        "2026-11-01T13:00:00Z",
        "2026-11-03T05:00:00Z",
        "2026-11-30T00:00:00Z",
    ]
    got = [next_retry(began.iloc[[i]], ts(n)).iloc[0] for i, n in enumerate(nows)]
    assert got[:4] == [
        ts("2026-11-01T06:00:00Z"),
        ts("2026-11-01T12:00:00Z"),
        ts("2026-11-02T00:00:00Z"),
        ts("2026-11-04T00:00:00Z"),
    ]
    assert pd.isna(got[4])  # past 28 days: no more retries, the job is disabled
