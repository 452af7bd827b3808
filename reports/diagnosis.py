"""diagnosis: one user's answer in plain language (verdict, the wiki's answer, fix, owner, when).

:func:`user_summary` is the support pack's ``user.csv`` object (reports.export.support_pack
reads it from here); :func:`build` adds what the wiki last answered about the user and one
plain-language sentence per part, which the dashboard's Users page shows as its callout and the
CLI prints with ``provlens report diagnosis --param user=<UPN or object id>``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import Filters, Inputs, ReportResult

# What each coverage verdict means for the user, said as a support engineer would.
VERDICT_TEXT: dict[str, str] = {
    "provisioned": "has an active account in the wiki",
    "failed": "is in scope, but Entra's last attempt to provision them failed",
    "skipped": "is in scope, but Entra's last attempt skipped them",
    "pending": "is in scope and waiting for Entra's next cycle (no attempt logged yet)",
    "missing_in_wiki": "is in scope and Entra reported success, but the wiki has no active account",
    "should_be_disabled": "is out of scope but still has an active wiki account",
    "orphaned": "has a wiki account Entra does not know about",
    "excluded": "is not in the app's scope, so Entra does not provision them",
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value).strip()
    return text or None


def user_summary(
    inputs: Inputs,
    user: str,
    filters: Filters | None = None,
    now: pd.Timestamp | None = None,
    events: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Return one user's ids, scope, wiki state, verdict, expected time and recommended fix.

    ``events``: the user's timeline events (reports.users.user_timeline, with the wiki's SCIM
    error of each) when the caller already has them.
    """
    from reports.estimate import when_user
    from reports.export import jsonable
    from reports.owners import documented_action, owners
    from reports.users import user_timeline

    ev = user_timeline(inputs, user, filters).events if events is None else events
    answer = when_user(inputs, user, now, filters)
    failed = ev.loc[ev["status"] == "failure"]
    fix: dict[str, Any] = {"last_error_code": None, "recommended_fix": None, "fix_owner": None}
    if len(failed):
        last = failed.iloc[[-1]]
        code = last["error_code"].astype("str")
        # The wiki's SCIM error for that failure: its answer to the matched request, else the
        # error Entra quotes in its reason (the model's rule, as in failures; the timeline's
        # events carry it).
        scim = last
        fix = {
            "last_error_code": jsonable(code.iloc[0]),
            "last_error_reason": jsonable(last["error_reason"].iloc[0]),
            "recommended_fix": jsonable(
                last["recommended_action"].fillna(documented_action(code)).iloc[0]
            ),
            "fix_owner": owners(code, last["error_category"].astype("str"), scim["scim_type"]).iloc[
                0
            ],
            "wiki_scim_status": jsonable(scim["scim_status"].iloc[0]),
            "wiki_scim_type": jsonable(scim["scim_type"].iloc[0]),
            "wiki_scim_detail": jsonable(scim["scim_detail"].iloc[0]),
        }
    return {
        **answer,
        "source_ids": ", ".join(ev["source_id"].dropna().unique()),
        "target_ids": ", ".join(ev["target_id"].dropna().unique()),
        "events": len(ev),
        "last_status": jsonable(ev["status"].iloc[-1]) if len(ev) else answer.get("last_status"),
        **fix,
    }


def wiki_answer(
    inputs: Inputs, events: pd.DataFrame, filters: Filters | None = None
) -> dict[str, Any] | None:
    """Return the wiki's latest SCIM answer about the user of ``events``: time, request, status."""
    from reports.export import wiki_requests_for

    requests = wiki_requests_for(inputs, events, filters)
    if requests.empty:
        return None
    last = requests.iloc[-1]
    status = last["status_code"]
    return {
        "at": last["received_at"],
        "request": " ".join(p for p in (_text(last["method"]), _text(last["path"])) if p),
        "status_code": None if pd.isna(status) else int(status),
        "scim_type": _text(last["scim_type"]),
        "detail": _text(last["detail"]),
        "requests": len(requests),
    }


def _when_text(summary: dict[str, Any]) -> str:
    """One line on when the user will have access (estimate.when_user's answer, in words).

    ``expected_by`` is never in the past and is null for a user who needs a fix first (then the
    reason names the fix) or who already has access (then ``provisioned_at`` says since when).
    """
    reason = _text(summary.get("reason")) or "no estimate"
    verdict = summary.get("verdict")
    since = summary.get("provisioned_at")
    if verdict == "provisioned" and since is not None and not pd.isna(since):
        stamp = pd.Timestamp(since).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
        return f"Has access since {stamp}."
    expected = summary.get("expected_by")
    if expected is None or pd.isna(expected):
        if verdict == "failed" or reason.lower().startswith("not until fixed"):
            fix = _text(summary.get("fix"))
            owner = _text(summary.get("fix_owner"))
            who = f" (owner: {owner})" if owner else ""
            if not fix or fix == _text(summary.get("recommended_fix")):
                # The callout already states the failure's fix: say what it means for access.
                return f"Access only once the fix above is made{who}; Entra retries every cycle."
            return f"Access only once the cause is fixed{who}: {fix}".rstrip(".") + "."
        return reason[:1].upper() + reason[1:] + "."
    stamp = pd.Timestamp(expected).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
    if verdict == "failed":
        return (
            f"Expected by {stamp}: the last failure is one Entra heals by retrying the user "
            "in its next cycle."
        )
    return f"Expected by {stamp}: {reason}."


def diagnose(
    inputs: Inputs, user: str, filters: Filters | None = None, now: pd.Timestamp | None = None
) -> dict[str, Any]:
    """Return the user summary plus the wiki's answer and the plain-language lines."""
    from reports.users import user_timeline

    events = user_timeline(inputs, user, filters).events
    summary = user_summary(inputs, user, filters, now, events)
    wiki = wiki_answer(inputs, events, filters)
    who = _text(summary.get("upn")) or user
    verdict = _text(summary.get("verdict"))
    if not summary.get("found"):
        headline = f"{who}: not found in the assignments, group members, events or the wiki."
    else:
        headline = f"{who} {VERDICT_TEXT.get(verdict or '', verdict or 'has no verdict')}."
    if wiki is None:
        wiki_line = "The wiki logged no SCIM request about this user."
    else:
        status = wiki["status_code"]
        error = " – ".join(p for p in (wiki["scim_type"], wiki["detail"]) if p)
        at = pd.Timestamp(wiki["at"]).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
        wiki_line = (
            f"The wiki last answered {status if status is not None else 'no status'} to "
            f"{wiki['request'] or 'a request'} at {at}" + (f": {error}" if error else "") + "."
        )
    fix = _text(summary.get("recommended_fix"))
    owner = _text(summary.get("fix_owner"))
    code = _text(summary.get("last_error_code"))
    owner_line = f"Owner: {owner}." if owner else None
    if fix and verdict == "provisioned":
        fix_line = (
            f"Nothing to fix now: the last failure ({code or 'no error code'}) was followed by "
            "a success."
        )
        owner_line = None
    elif fix:
        fix_line = f"Fix ({code}): {fix}" if code else f"Fix: {fix}"
    elif verdict in ("provisioned", "pending"):
        fix_line = "Nothing to fix."
    else:
        fix_line = "No recommended fix logged for this user."
    return {
        **summary,
        "wiki_answer": wiki,
        "headline": headline,
        "wiki_line": wiki_line,
        "fix_line": fix_line,
        "owner_line": owner_line,
        "when_line": _when_text(summary),
    }


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = True,
    now: pd.Timestamp | None = None,
    user: str | None = None,
    **params: Any,
) -> ReportResult:
    """Return one user's diagnosis (``user`` = UPN, object id or display name)."""
    from ingest.errors import UsageError

    if not user:
        raise UsageError("the diagnosis report needs --param user=<UPN or object id>")
    return ReportResult(data=diagnose(inputs, user, filters, now))
