"""One way to read a time, for every input: ISO 8601 text to UTC timestamps.

Every ingest path (provisioning records, portal CSV, Graph objects, SCIM audit, the store's
watermarks) parses times here, so a time reads the same whatever file or service it came from.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_times(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 strings (0-9 fractional digits, Z or offsets) to UTC; bad ones become NaT.

    A time without an offset is taken as UTC. Years outside 1..9999 are not times.
    """
    values = values.astype(object)
    out = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce").astype(
        "datetime64[us, UTC]"
    )
    missing = out.isna() & values.notna()
    if missing.any():
        # Years outside the nanosecond range (0001 sentinels, 9999): parse those one by one.
        fixed = {i: parse_time(values.loc[i]) for i in out.index[missing]}
        out = pd.Series(
            pd.array(
                [fixed.get(i, v) for i, v in zip(out.index, out, strict=True)],
                dtype="datetime64[us, UTC]",
            ),
            index=values.index,
        )
    # Years outside 1..9999 (pandas accepts year 0) cannot become Python datetimes, which every
    # report, export and `store info` needs: treat them as not a time rather than store them.
    return out.where((out.dt.year >= 1) & (out.dt.year <= 9999))


def parse_time(value: Any) -> pd.Timestamp | None:
    """One ISO 8601 time to a UTC timestamp (microseconds), or None when it is not one."""
    if isinstance(value, pd.Timestamp):
        ts = value
    elif not isinstance(value, str):
        return None
    else:
        try:
            ts = pd.Timestamp(_FRACTION.sub(r"\1", value.strip()))
        except (ValueError, OverflowError):
            return None
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").as_unit("us")
