"""users and the one-user timeline."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import run_report
from reports.users import user_timeline
from tests.support.frames import ts, world


def test_users_hide_noise_and_keep_the_failed_then_succeeded_object():
    result = run_report("users", world())
    table = result.frame
    assert result.hidden_noise == 2  # e3 (out of scope), e7 (no-op accountDisabled)
    # u7 and u3 have only noise: their rows stay (findable), marked by noise_events
    assert table["source_id"].tolist() == ["u1", "u10", "u9", "u7", "u2", "u3", "u4"]
    assert table.set_index("source_id")["noise_events"].to_dict() == {
        "u1": 0,
        "u10": 0,
        "u9": 0,
        "u7": 1,
        "u2": 0,
        "u3": 1,
        "u4": 0,
    }
    u2 = table.set_index("source_id").loc["u2"]
    assert u2["last_status"] == "success" and u2["last_action"] == "create"
    assert u2["events"] == 2 and u2["failures"] == 1
    assert u2["last_error_code"] == "TheOrgWikiEntryConflict"  # kept after the later success
    assert u2["first_success_at"] == ts("2026-11-20T01:00:00Z")
    assert u2["target_id"] == "w2"
    u1 = table.set_index("source_id").loc["u1"]
    assert (u1["events"], u1["failures"]) == (3, 0)
    assert u1["first_success_at"] == ts("2026-11-19T23:50:00Z")
    assert u1["last_success_at"] == ts("2026-11-20T01:10:00Z")
    assert pd.isna(u1["last_error_code"])
    u9 = table.set_index("source_id").loc["u9"]
    assert u9["last_error_code"] == "TheOrgWikiMandatoryFieldsMissing"
    assert pd.isna(u9["first_success_at"])


def test_users_with_noise_and_for_one_user():
    assert run_report("users", world(), include_noise=True).frame["source_id"].tolist() == [
        "u1",
        "u10",
        "u9",
        "u7",
        "u2",
        "u3",
        "u4",
    ]
    one = run_report("users", world(), user="BO@contoso.example").frame
    assert one["source_id"].tolist() == ["u2"]


@pytest.mark.parametrize("user", ["u2", "bo@CONTOSO.example", "w2"])
def test_timeline_by_id_upn_or_target_id_has_steps_and_modified_properties(user):
    tl = user_timeline(world(), user)
    assert tl.events["id"].tolist() == ["e2", "e6"]
    assert tl.steps["name"].tolist() == ["EntryImportAdd", "EntryExportAdd"]
    assert tl.steps["event_id"].tolist() == ["e2", "e2"]
    assert tl.modified_properties.empty


def test_timeline_report_flattens_steps_and_marks_noise():
    frame = run_report("timeline", world(), user="Ada").frame
    assert frame["id"].tolist() == ["e1", "e4", "e10"]
    assert frame["modified_properties"].tolist()[2] == "displayName: Ada → Ada L"
    failed = run_report("timeline", world(), user="u2").frame
    assert failed["steps"].tolist()[0] == (
        "0. EntryImportAdd [success]\n1. EntryExportAdd [failure]: 409 Conflict"
    )
    hidden = run_report("timeline", world(), user="u7")
    assert hidden.frame.empty and hidden.hidden_noise == 1
    shown = run_report("timeline", world(), user="u7", include_noise=True).frame
    assert shown["noise"].tolist() == [True]
    assert shown["modified_properties"].tolist() == ["accountDisabled: ∅ → False"]


def test_timeline_needs_a_user():
    with pytest.raises(ValueError, match="needs a user"):
        run_report("timeline", world())
