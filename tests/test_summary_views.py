"""summary: Microsoft's view (the envelope's resultType) beside provlens's, and cycles as pairs."""

from __future__ import annotations

from reports import Filters, run_report
from tests.support.frames import inputs

T = "2026-11-20T10:00:00Z"


def test_summary_shows_the_envelope_result_type_beside_the_inner_status() -> None:
    # An Azure Monitor envelope can say Success around a record that was skipped or failed:
    # the workbooks count the envelope, provlens the record. Both are shown, neither is lost.
    data = inputs(
        events=[
            {"activity_at": T, "status": "skipped", "envelope_result_type": "success"},
            {"activity_at": T, "status": "failure", "envelope_result_type": "success"},
            {"activity_at": T, "status": "success", "envelope_result_type": "success"},
            {"activity_at": T, "status": "failure", "envelope_result_type": "failure"},
            {"activity_at": T, "status": "success"},  # from Graph: no envelope
        ]
    )
    out = run_report("summary", data, Filters()).data
    assert out is not None
    assert out["by_envelope_result_type"] == {
        "success": {"skipped": 1, "failure": 1, "success": 1},
        "failure": {"failure": 1},
    }
    assert out["events"] == 5
    assert out["success_rate"] == 0.4  # provlens's view: the records' own status


def test_summary_without_envelopes_has_an_empty_microsoft_view() -> None:
    data = inputs(events=[{"activity_at": T}])
    out = run_report("summary", data, Filters()).data
    assert out is not None and out["by_envelope_result_type"] == {}


def test_summary_counts_a_cycle_id_shared_by_two_jobs_as_two_cycles() -> None:
    data = inputs(
        events=[
            {"activity_at": T, "job_id": "job-a", "cycle_id": "c1"},
            {"activity_at": T, "job_id": "job-b", "cycle_id": "c1"},
            {"activity_at": T, "job_id": "job-b", "cycle_id": "c1"},
        ]
    )
    summary = run_report("summary", data, Filters()).data
    cycles = run_report("cycles", data, Filters()).frame
    assert summary is not None and cycles is not None
    assert summary["cycles"] == 2 == len(cycles)
