"""The admin center's CSV download: three files joined on the change ID.

``ProvisioningLogs`` has one row per record without steps and modified properties;
``..._ProvisioningSteps`` and ``..._ModifiedProperties`` carry those with the change ID. Microsoft
does not document the headers, so columns are matched by aliases, case-, space- and
punctuation-insensitively; a layout that matches none of the three is refused with the columns
found. Step and property rows carry only the change ID; ``ingest.files`` joins them to the events
of the same call (or already stored) on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from ingest import fieldmap as fm
from ingest import schema
from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.formats.provisioning import _csv_header, _looks_json, _norm_header, read_csv_text
from ingest.records import (
    ACTION,
    ERROR_CATEGORY,
    INITIATOR,
    STATUS,
    STEP_TYPE,
    identity_type,
    norm_enum,
)
from ingest.times import parse_times

_NOTHING = "nothing was stored"

# canonical field -> accepted normalised header spellings (first match wins), from the field map
EVENT_ALIASES = fm.csv_aliases(fm.EVENT_FIELDS, fm.EVENT_CSV_ONLY)
STEP_ALIASES = fm.csv_aliases(fm.STEP_FIELDS, fm.STEP_CSV_ONLY)
PROP_ALIASES = fm.csv_aliases(fm.PROPERTY_FIELDS, fm.PROPERTY_CSV_ONLY)


def _match(headers: list[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Return canonical field -> actual header for the headers that match an alias."""
    norm: dict[str, str] = {}
    for h in headers:
        norm.setdefault(_norm_header(h), h)
    out: dict[str, str] = {}
    used: set[str] = set()
    for field, names in aliases.items():
        for n in names:
            if n in norm and norm[n] not in used:
                out[field] = norm[n]
                used.add(norm[n])
                break
    return out


def _layout(headers: list[str]) -> str | None:
    names = {_norm_header(h) for h in headers}
    if names & {"oldvalue", "newvalue"}:
        return "modified_properties"
    if names & {"steptype", "provisioningsteptype", "stepname", "stepstatus"} or (
        "description" in names and not names & {"action", "provisioningaction"}
    ):
        return "steps"
    ev = _match(headers, EVENT_ALIASES)
    if len(ev) >= 3 and ({"activity_at", "action", "status"} & set(ev)):
        return "events"
    return None


def _sniff(source: Source) -> bool:
    if _looks_json(source):
        return False
    headers = _csv_header(source)
    if len(headers) < 2:
        return False
    names = {_norm_header(h) for h in headers}
    if "timegenerated" in names and "provisioningsteps" in names:
        return False  # Log Analytics export
    return _layout(headers) is not None


def _missing(source: Source, what: str, headers: list[str]) -> BadInput:
    return BadInput(
        f"{source.name}:1",
        f"no {what} column (columns found: {', '.join(headers)})",
        "the admin center's CSV download needs its Change ID column to join the three files; "
        "nothing was stored",
    )


def _enum_col(values: pd.Series, mapping: dict) -> tuple[list[str], list[str | None]]:
    pairs = [norm_enum(v, mapping) for v in values]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def parse(source: Source, options: Options) -> Iterator[Frames]:
    """Yield the frame one of the three CSV files holds."""
    df = read_csv_text(source)
    headers = list(df.columns)
    layout = _layout(headers)
    if layout is None:
        raise BadInput(
            f"{source.name}:1",
            f"not a recognised provisioning-log CSV layout (columns: {', '.join(headers)})",
            "expected the admin center's ProvisioningLogs, _ProvisioningSteps or "
            "_ModifiedProperties download; nothing was stored",
        )
    if layout == "events":
        yield {"events": _events(source, df, headers)}
    elif layout == "steps":
        yield {"steps": _steps(source, df, headers)}
    else:
        cols = _match(headers, PROP_ALIASES)
        if "change_id" not in cols:
            raise _missing(source, "Change ID", headers)
        out = pd.DataFrame({f: df[h] for f, h in cols.items()})
        yield {"modified_properties": schema.conform("modified_properties", out)}


def _events(source: Source, df: pd.DataFrame, headers: list[str]) -> pd.DataFrame:
    cols = _match(headers, EVENT_ALIASES)
    for need, label in (("change_id", "Change ID"), ("activity_at", "Date")):
        if need not in cols:
            raise _missing(source, label, headers)
    out = pd.DataFrame({f: df[h] for f, h in cols.items()})
    blank = out["change_id"].isna()
    if blank.any():
        line = int(blank.to_numpy().nonzero()[0][0]) + 2
        raise BadInput(f"{source.name}:{line}", "row has an empty Change ID", _NOTHING)
    if "id" not in out:
        out["id"] = out["change_id"]  # the portal's "unique identifier" of a change
    out["id"] = out["id"].fillna(out["change_id"])
    times = parse_times(out["activity_at"].astype(object))
    if times.isna().any():
        i = int(times.isna().to_numpy().nonzero()[0][0])
        raise BadInput(
            f"{source.name}:{i + 2}",
            f"Date {out['activity_at'].iloc[i]!r} is not a date and time",
            _NOTHING,
        )
    out["activity_at"] = times
    for col, mapping in (
        ("action", ACTION),
        ("status", STATUS),
        ("initiator_type", INITIATOR),
        ("error_category", ERROR_CATEGORY),
    ):
        if col in out:
            canon, raw = _enum_col(out[col], mapping)
            out[col] = canon
            out[f"{col}_raw"] = raw
        elif col in ("action", "status"):
            out[col] = "unknown"
    for col in ("source_type", "target_type"):
        if col in out:
            out[col] = [identity_type(v) for v in out[col]]
    if "duration_ms" in out:
        out["duration_ms"] = (
            pd.to_numeric(out["duration_ms"], errors="coerce").round().astype("Int64")
        )
    out["origin"] = "file"
    return schema.conform("events", out)


def _steps(source: Source, df: pd.DataFrame, headers: list[str]) -> pd.DataFrame:
    cols = _match(headers, STEP_ALIASES)
    if "change_id" not in cols:
        raise _missing(source, "Change ID", headers)
    out = pd.DataFrame({f: df[h] for f, h in cols.items()})
    if "position" in out:
        out["position"] = pd.to_numeric(out["position"], errors="coerce").astype("Int64")
    else:
        out["position"] = out.groupby("change_id", sort=False).cumcount()
    for col, mapping in (("step_type", STEP_TYPE), ("status", STATUS)):
        if col in out:
            canon, raw = _enum_col(out[col], mapping)
            out[col] = canon
            out[f"{col}_raw"] = raw
        else:
            out[col] = "unknown"
    return schema.conform("steps", out)


register(
    FileFormat(
        "portal_csv",
        "Admin center CSV download (ProvisioningLogs, _ProvisioningSteps, _ModifiedProperties)",
        _sniff,
        parse,
        priority=56,
        tables=("events", "steps", "modified_properties"),
    )
)
