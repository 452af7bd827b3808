"""scim-traffic: the wiki's SCIM traffic per minute and per Entra provisioning cycle.

One frame, two granularities (``granularity`` says which; ``granularity="minute"`` or
``"cycle"`` as a parameter keeps only one):

- ``minute`` rows: one per UTC minute with at least one request.
- ``cycle`` rows: one per Entra cycle (events sharing ``job_id`` + ``cycle_id``), also when the
  wiki saw no request in it. A request belongs to a cycle when it was received between the
  cycle's first event - 120 s and last event + 120 s (the correlation window, since requests
  precede the event Entra logs); when cycles overlap, to the one that started last.

Columns:
``granularity`` (minute, cycle); ``period_start``, ``period_end`` (the minute, or the cycle's
first/last event); ``job_id``, ``cycle_id`` (cycle rows); ``events`` (Entra events in the cycle);
``requests``; ``requests_per_min`` (requests ÷ the period's length in minutes, at least one);
``status_2xx``, ``status_3xx``, ``status_4xx``, ``status_5xx``, ``status_unknown``;
``throttled_429`` and ``conflict_409`` (also counted in ``status_4xx``); ``status_mix``
(text, e.g. ``"200:41 201:3 409:1"``); ``creates``, ``updates`` (replace + patch),
``deletes``, ``reads`` (read + query), ``other_ops``; ``latency_p50_ms``, ``latency_p95_ms``,
``latency_p99_ms`` (linear-interpolated quantiles of the requests with a latency); ``first_at``,
``last_at`` (first/last request). Filters: time range on ``received_at`` (minute rows) and on
the cycle's first event (cycle rows); service principal and job filters select cycles.
"""

from __future__ import annotations

from typing import Any, Final

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reports import Filters, Inputs, ReportResult

SLACK: Final = pd.Timedelta(seconds=120)
COLUMNS: Final = [
    "granularity",
    "period_start",
    "period_end",
    "job_id",
    "cycle_id",
    "events",
    "requests",
    "requests_per_min",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "status_unknown",
    "throttled_429",
    "conflict_409",
    "status_mix",
    "creates",
    "updates",
    "deletes",
    "reads",
    "other_ops",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "first_at",
    "last_at",
]
_COUNTS: Final = [
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "status_unknown",
    "throttled_429",
    "conflict_409",
    "creates",
    "updates",
    "deletes",
    "reads",
    "other_ops",
]


# Per request, 1 when it falls in each counted category (SQL over the request's code and op).
_FLAGS: Final = {
    "status_2xx": "code >= 200 AND code < 300",
    "status_3xx": "code >= 300 AND code < 400",
    "status_4xx": "code >= 400 AND code < 500",
    "status_5xx": "code >= 500 AND code < 600",
    "status_unknown": "code IS NULL OR code < 200 OR code >= 600",
    "throttled_429": "code = 429",
    "conflict_409": "code = 409",
    "creates": "op = 'create'",
    "updates": "op IN ('replace', 'patch')",
    "deletes": "op = 'delete'",
    "reads": "op IN ('read', 'query')",
    "other_ops": "op IS NULL OR op NOT IN ('create', 'replace', 'patch', 'delete', 'read', "
    "'query')",
}
_AGGREGATE: Final = f"""
WITH r AS (
    SELECT _key, status_code::DOUBLE AS code, operation AS op, _t, latency_ms::DOUBLE AS lat
    FROM requests
),
mix AS (
    SELECT _key, string_agg(c || ':' || n, ' ' ORDER BY c) AS status_mix
    FROM (
        SELECT _key, coalesce(CAST(code AS BIGINT)::VARCHAR, 'unknown') AS c, count(*) AS n
        FROM r GROUP BY ALL
    )
    GROUP BY _key
),
agg AS (
    SELECT _key, {", ".join(f"count(*) FILTER (WHERE {v}) AS {k}" for k, v in _FLAGS.items())},
           count(*) AS requests, min(_t) AS first_at, max(_t) AS last_at
    FROM r GROUP BY _key
)
SELECT agg.*, mix.status_mix FROM agg JOIN mix USING (_key) ORDER BY _key
"""  # noqa: S608 (constants)


def _aggregate(
    requests: pd.DataFrame, key: np.ndarray, at: npt.NDArray[np.int64] | None = None
) -> pd.DataFrame:
    """Return per-key counts, status mix, latency quantiles and first/last times.

    ``key`` is a numpy array aligned with ``requests`` (ints or naive datetimes), or with the
    rows at positions ``at`` of ``requests`` when given (those rows only; no copy of them).
    Counts, mix and times in DuckDB; quantiles linear-interpolated over the requests with a
    latency.
    """
    # Nullable columns: a missing code or latency is NULL in SQL (never NaN). As Arrow arrays
    # (no Python object per value).
    code = _doubles(requests["status_code"])
    latency = _doubles(requests["latency_ms"])
    operation = pc.cast(pa.array(requests["operation"], from_pandas=True), pa.string())
    times = _naive(requests["received_at"])
    if at is not None:
        code, latency, times = code[at], latency[at], times[at]
        operation = pc.take(operation, pa.array(at))
    table = pa.table(
        {
            "_key": pa.array(key),
            "status_code": pa.array(code, mask=np.isnan(code)),
            "operation": operation,
            "_t": pa.array(times),
            "latency_ms": pa.array(latency, mask=np.isnan(latency)),
        }
    )
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("requests", table)
        out = con.sql(_AGGREGATE).to_arrow_table().to_pandas()
    finally:
        con.close()
    out = out.set_index("_key")
    out.index.name = None
    # Quantiles by pandas' own interpolation (the figures stay the same to the last digit).
    g = pd.Series(latency, dtype="float64").groupby(key, sort=True)
    levels = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
    # All three in one pass over the groups: per key, one value per level, in levels' order.
    found = g.quantile(list(levels.values()))
    per_key = found.to_numpy().reshape(-1, len(levels))
    keys = found.index.get_level_values(0)[:: len(levels)]
    for i, name in enumerate(levels):
        out[name] = pd.Series(per_key[:, i], index=keys).reindex(out.index).to_numpy()
    for col in [*_COUNTS, "requests"]:
        out[col] = out[col].astype("int64")
    for col in ("first_at", "last_at"):
        out[col] = pd.Series(out[col].to_numpy("datetime64[us]"), index=out.index).dt.tz_localize(
            "UTC"
        )
    return out


def _doubles(values: pd.Series) -> npt.NDArray[np.float64]:
    """Return numbers as float64, a missing one (NA or NaN) as NaN (from their Arrow
    buffers when the column is Arrow-backed: no Python object per value)."""
    numbers = pc.cast(pa.array(values, from_pandas=True), pa.float64())
    out: npt.NDArray[np.float64] = np.asarray(numbers.to_numpy(zero_copy_only=False), "float64")
    return out


def _naive(times: pd.Series) -> np.ndarray:
    """Return UTC times as naive datetime64[us] (tz-aware to_numpy would make objects)."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")


def _minutes(requests: pd.DataFrame) -> pd.DataFrame:
    minute = _naive(requests["received_at"]).astype("datetime64[m]").astype("datetime64[us]")
    agg = _aggregate(requests, minute)
    agg = agg.reset_index(names="period_start")
    agg["period_start"] = agg["period_start"].dt.tz_localize("UTC")
    agg["period_end"] = agg["period_start"] + pd.Timedelta(minutes=1)
    agg["requests_per_min"] = agg["requests"].astype("float64")
    agg["granularity"] = "minute"
    return agg


def _hours(requests: pd.DataFrame) -> pd.DataFrame:
    """Return one row per hour with requests: the readable grain for latency percentile lines."""
    hour = _naive(requests["received_at"]).astype("datetime64[h]").astype("datetime64[us]")
    agg = _aggregate(requests, hour)
    agg = agg.reset_index(names="period_start")
    agg["period_start"] = agg["period_start"].dt.tz_localize("UTC")
    agg["period_end"] = agg["period_start"] + pd.Timedelta(hours=1)
    agg["requests_per_min"] = agg["requests"].astype("float64") / 60
    agg["granularity"] = "hour"
    return agg


def _cycles(cycles: pd.DataFrame, requests: pd.DataFrame, slack: pd.Timedelta) -> pd.DataFrame:
    """Return per cycle (the model's, from all its events) the requests received during it."""
    if cycles.empty:
        return pd.DataFrame()
    cyc = (
        cycles[["job_id", "cycle_id", "started_at", "ended_at", "events"]]
        .rename(columns={"started_at": "period_start", "ended_at": "period_end"})
        .assign(job_id=lambda f: f["job_id"].fillna(""))
        .sort_values(["period_start", "job_id", "cycle_id"], kind="stable")
        .reset_index(drop=True)
    )
    cyc["_n"] = np.arange(len(cyc))
    agg = pd.DataFrame()
    if not requests.empty:
        left = pd.DataFrame(
            {"_t": _naive(requests["received_at"]), "_i": np.arange(len(requests))}
        ).sort_values("_t", kind="stable")
        right = pd.DataFrame(
            {
                "_t": _naive(cyc["period_start"] - slack),
                "_n": cyc["_n"].to_numpy(),
                "_end": _naive(cyc["period_end"] + slack),
            }
        ).sort_values("_t", kind="stable")
        m = pd.merge_asof(left, right, on="_t", direction="backward")
        inside = m["_n"].notna() & (m["_t"] <= m["_end"])
        m = m.loc[inside.to_numpy(bool)]
        if not m.empty:
            at = m["_i"].to_numpy(dtype=np.int64)
            agg = _aggregate(requests, m["_n"].astype("int64").to_numpy(), at)
    out = cyc.merge(agg, left_on="_n", right_index=True, how="left") if not agg.empty else cyc
    out = out.reindex(columns=[*cyc.columns, *[c for c in agg.columns if c not in cyc.columns]])
    for col in [*_COUNTS, "requests"]:
        out[col] = out[col].fillna(0).astype("int64") if col in out else 0
    minutes = (out["period_end"] - out["period_start"]).dt.total_seconds() / 60
    out["requests_per_min"] = out["requests"] / minutes.clip(lower=1.0)
    out["granularity"] = "cycle"
    out["job_id"] = out["job_id"].replace("", None)
    return out.drop(columns="_n")


def build(
    inputs: Inputs,
    filters: Filters,
    *,
    include_noise: bool = False,
    now: pd.Timestamp | None = None,
    granularity: str = "both",
    slack_s: float = 120,
    **params: Any,
) -> ReportResult:
    """Return request counts, status mix, latency quantiles and 429s per minute and per cycle.

    ``granularity="hour"`` gives one row per hour instead (latency p50/p95 as hourly lines).
    """
    if granularity not in ("both", "minute", "cycle", "hour"):
        raise ValueError(f"granularity must be both, minute, cycle or hour, not {granularity!r}")
    from reports.sql import stored_unique

    unique = stored_unique(inputs, "scim_requests")  # then no last copy to pick
    requests = inputs.scim_requests
    timed = requests["received_at"].notna()
    if not bool(timed.all()):  # else no copy of every request
        requests = requests.loc[timed]
    if not unique:
        requests = requests.drop_duplicates("request_id", keep="last")
    parts = []
    if granularity == "hour" and not requests.empty:
        parts.append(_hours(filters.apply(requests, "received_at")))
    if granularity in ("both", "minute") and not requests.empty:
        parts.append(_minutes(filters.apply(requests, "received_at")))
    if granularity in ("both", "cycle"):
        from reports.model import model_of, selected_cycles

        cycles = model_of(inputs).cycles
        # Every cycle has events: with no filter, all of them (the events need not be read).
        if filters != Filters():
            cycles = selected_cycles(cycles, _pairs(inputs, filters))
        selected = cycles
        cycles = _cycles(selected, requests, pd.Timedelta(seconds=slack_s))
        if not cycles.empty:
            parts.append(cycles)
    parts = [p for p in parts if not p.empty]
    if not parts:
        return ReportResult(frame=_empty())
    out = pd.concat([p.reindex(columns=COLUMNS) for p in parts], ignore_index=True)
    return ReportResult(frame=_typed(out))


def _pairs(inputs: Inputs, filters: Filters) -> pd.DataFrame:
    """Return the (job, cycle) pairs of the events ``filters`` select, found where they lie."""
    from reports import sql

    where = sql.filter_sql(filters)
    query = f"SELECT DISTINCT job_id, cycle_id FROM events WHERE {where}"  # noqa: S608 (quoted)
    return sql.over(inputs, query, ["events"])


def traffic_summary(requests: pd.DataFrame) -> dict[str, Any]:
    """Return request count, error (>= 400) and 429 counts and latency p50/p95/p99 of requests."""
    codes = requests["status_code"].astype("Float64")
    latency = requests["latency_ms"].astype("Float64").dropna()
    return {
        "requests": len(requests),
        "errors": int((codes >= 400).fillna(False).sum()),
        "throttled": int((codes == 429).fillna(False).sum()),
        "p50_ms": float(latency.quantile(0.5)) if len(latency) else None,
        "p95_ms": float(latency.quantile(0.95)) if len(latency) else None,
        "p99_ms": float(latency.quantile(0.99)) if len(latency) else None,
    }


def status_class(codes: pd.Series) -> pd.Series:
    """Return `2xx`/`4xx`/... labels for HTTP status codes (`429` kept apart, `unknown` if null)."""
    num = codes.astype("Float64")
    label = (num // 100).astype("Int64").astype(str) + "xx"
    label = label.where(num != 429, "429")
    return label.where(num.notna(), "unknown")


def status_code_counts(requests: pd.DataFrame) -> pd.DataFrame:
    """Return requests per HTTP status code with its class, most frequent first."""
    counts = requests["status_code"].value_counts(dropna=False).rename("requests").reset_index()
    counts["status_class"] = status_class(counts["status_code"])
    codes = counts["status_code"].astype("Int64")
    counts["status_code"] = codes.astype("str").where(codes.notna(), "unknown")
    return counts


def status_classes_long(minutes: pd.DataFrame, classes: dict[str, str]) -> pd.DataFrame:
    """Return minute rows as (period_start, status, requests), zero counts dropped.

    ``classes`` maps a label to a count column; ``status_4xx_other`` is 4xx without the 429s.
    """
    wide = minutes.assign(status_4xx_other=minutes["status_4xx"] - minutes["throttled_429"])
    long = wide[["period_start", *classes.values()]].melt(
        id_vars=["period_start"],
        value_vars=list(classes.values()),
        var_name="column",
        value_name="requests",
    )
    long["status"] = long["column"].map({v: k for k, v in classes.items()})
    return long.loc[long["requests"] > 0, ["period_start", "status", "requests"]].reset_index(
        drop=True
    )


def _empty() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS}))


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    """Return ``out`` with stable dtypes: text, UTC times, ints, floats."""
    out = out.copy()
    for col in ("granularity", "job_id", "cycle_id", "status_mix"):
        out[col] = out[col].astype("object").where(out[col].notna(), None).astype("str")
    for col in ("period_start", "period_end", "first_at", "last_at"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    for col in ("events",):
        out[col] = out[col].astype("Int64")
    for col in [*_COUNTS, "requests"]:
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("requests_per_min", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        out[col] = out[col].astype("Float64")
    return out[COLUMNS]
