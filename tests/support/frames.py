"""Build small canonical frames for tests: a row is a dict of the columns you care about."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ingest.schema import conform
from reports import Inputs


def ts(value: str) -> pd.Timestamp:
    """Return an ISO time as a UTC timestamp at the schema's resolution."""
    return pd.Timestamp(value).tz_convert("UTC") if "Z" in value or "+" in value else pd.Timestamp(
        value, tz="UTC"
    )


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a conformed canonical frame of ``table`` from ``rows`` (missing columns are null)."""
    return conform(table, pd.DataFrame(rows))


def events(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return an events frame; ids default to e1.., action create, status success, origin file."""
    full = []
    for i, row in enumerate(rows, start=1):
        r = {"id": f"e{i}", "action": "create", "status": "success", "origin": "file"}
        r.update(row)
        full.append(r)
    return frame("events", full)


def steps(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a steps frame; step_type defaults to unknown, status to success."""
    full = [{"step_type": "unknown", "status": "success", "position": 0, **r} for r in rows]
    return frame("steps", full)


def modified_properties(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Return a modified_properties frame."""
    return frame("modified_properties", rows)


def inputs(**tables: pd.DataFrame | list[dict[str, Any]]) -> Inputs:
    """Return Inputs; each table may be a frame or a list of row dicts (events get defaults)."""
    built: dict[str, pd.DataFrame | None] = {}
    for name, value in tables.items():
        if isinstance(value, pd.DataFrame):
            built[name] = value
        elif name == "events":
            built[name] = events(value)
        elif name == "steps":
            built[name] = steps(value)
        else:
            built[name] = frame(name, value)
    return Inputs.from_tables(built)
