"""Provisioning log records, in any of their shapes, to the events/steps/modified_properties frames.

:func:`records_to_frames` is the public entry for records already parsed into Python objects
(Graph pages, the Graph puller, Log Analytics query rows as dicts with their column names, nested
columns as JSON text). It reads every column from :mod:`ingest.fieldmap`, matching keys
case-insensitively at every nesting level, so one record gives the same row in every shape and
every file it arrives in.

The per-record engine here only extracts the raw values the map points at; :func:`finish` turns
raw values into canonical frames (enums, durations, derived columns, last copy wins). The
columnar engine (:mod:`ingest.records_fast`) extracts the same raw values from the same map and
calls the same :func:`finish`.

Every quirk in reference/graph/provisioning-object-summary.md section 5 is handled: enum casing
and integers, ``servicePrincipal`` as object or array, the ``initiatingType`` typo, empty strings
for missing ids, 0-9 fractional-second digits and offsets, JSON-in-string values. Unknown enum
values become ``unknown`` with the raw value kept in the ``*_raw`` column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ingest import fieldmap as fm
from ingest import schema
from ingest.errors import BadInput
from ingest.times import parse_times

Frames = dict[str, pd.DataFrame]

# Kept for the modules that normalise enums of their own files (portal CSV).
ACTION = fm.ENUMS["action"]
STATUS = fm.ENUMS["status"]
STEP_TYPE = fm.ENUMS["step_type"]
ERROR_CATEGORY = fm.ENUMS["error_category"]
INITIATOR = fm.ENUMS["initiator"]
norm_enum = fm.norm_enum
identity_type = fm.identity_type

PARENT = "_parent"  # row number of a child's event within one extraction (internal)
_EVENT_KEYS = [(f.column, f.keys) for f in fm.EVENT_FIELDS]
_STEP_KEYS = [(f.column, f.keys) for f in fm.STEP_FIELDS]
_PROP_KEYS = [(f.column, f.keys) for f in fm.PROPERTY_FIELDS]
_STEPS_KEY = fm.STEPS_PATH.lower()
_PROPS_KEY = fm.PROPERTIES_PATH.lower()
_RESOURCE_KEYS = tuple(fm.RESOURCE_ID.lower().split("."))
_SI_DETAILS = ("sourceidentity", "details")


def json_value(value: Any) -> Any:
    """Parse JSON-in-a-string values (Log Analytics columns, some stream fields)."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in ("{", "[") or s == "null":
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                return value
    return value


def _obj(value: Any) -> dict[str, Any]:
    """Return a dict for an object-ish value (object, JSON text, one-element array), else {}."""
    value = json_value(value)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict)), None)
    return value if isinstance(value, dict) else {}


def ci(d: Mapping[str, Any]) -> dict[str, Any]:
    """Lower-case the keys of ``d`` (the first spelling wins)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.setdefault(k.lower() if isinstance(k, str) else k, v)
    return out


def text(value: Any) -> str | None:
    """Return a non-empty string or None (Entra writes "" for missing ids and names)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _empty(v: Any) -> bool:
    return v is None or v == ""


class _View:
    """Case-insensitive path lookups into one record (each object lower-cased once)."""

    __slots__ = ("cache", "root")

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.cache: dict[tuple[str, ...], dict[str, Any]] = {}

    def node(self, prefix: tuple[str, ...]) -> dict[str, Any]:
        if not prefix:
            return self.root
        hit = self.cache.get(prefix)
        if hit is None:
            hit = ci(_obj(self.node(prefix[:-1]).get(prefix[-1])))
            self.cache[prefix] = hit
        return hit

    def first(self, paths: tuple[tuple[str, ...], ...]) -> Any:
        for keys in paths:
            v = self.node(keys[:-1]).get(keys[-1])
            if not _empty(v):
                return v
        return None


def unwrap(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Return the record with lower-cased top-level keys; an envelope's inner record carries
    the envelope under ``@envelope``."""
    top = ci(rec)
    props = top.get("properties")
    if isinstance(props, (dict, str)) and any(k in top for k in fm.ENVELOPE_MARKERS):
        inner = ci(_obj(props))
        inner[fm.ENVELOPE] = top
        return inner
    return top


def _details_text(details: Any) -> str | None:
    details = json_value(details)
    if details is None or details == {} or details == "":
        return None
    if isinstance(details, str):
        return details
    return orjson.dumps(details).decode()


def _scalar(value: Any) -> Any:
    """A raw value as the columnar engine sees it: text, or None (objects as JSON text)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _value_text(value: Any) -> str | None:
    """Old/new property values and step text: strings as they are, JSON otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return text(value)


def extract(records: Iterable[Any], where: Callable[[int], str]) -> tuple[dict, dict, dict]:
    """Raw column lists for events, steps and properties of ``records`` (per record)."""
    ev: dict[str, list[Any]] = {c: [] for c, _ in _EVENT_KEYS}
    ev["resource_id"] = []
    st: dict[str, list[Any]] = {c: [] for c, _ in _STEP_KEYS}
    st[PARENT] = []
    st["position"] = []
    mp: dict[str, list[Any]] = {c: [] for c, _ in _PROP_KEYS}
    mp[PARENT] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise BadInput(
                where(i),
                f"expected a provisioning record (a JSON object), found {type(rec).__name__}",
                "check that the file is a provisioning log export; nothing was stored",
            )
        view = _View(unwrap(rec))
        for column, paths in _EVENT_KEYS:
            ev[column].append(view.first(paths))
        if isinstance(ev["id"][-1], (dict, list, bool, float)):
            raise BadInput(
                where(i),
                f"record id is not a string ({type(ev['id'][-1]).__name__})",
                "provisioning records need an `id`; nothing was stored",
            )
        ev["resource_id"].append(view.node(_RESOURCE_KEYS[:-1]).get(_RESOURCE_KEYS[-1]))
        row = len(ev["id"]) - 1
        steps = json_value(view.root.get(_STEPS_KEY))
        if isinstance(steps, list):
            for pos, step in enumerate(steps):
                if not isinstance(step, Mapping):
                    continue
                sv = _View(ci(step))
                for column, paths in _STEP_KEYS:
                    st[column].append(sv.first(paths))
                st[PARENT].append(row)
                st["position"].append(pos)
        props = json_value(view.root.get(_PROPS_KEY))
        if isinstance(props, list):
            for prop in props:
                if not isinstance(prop, Mapping):
                    continue
                pv = _View(ci(prop))
                for column, paths in _PROP_KEYS:
                    mp[column].append(pv.first(paths))
                mp[PARENT].append(row)
    return ev, st, mp


def records_to_frames(
    records: Iterable[Any],
    origin: str,
    locate: Callable[[int], str] | None = None,
) -> Frames:
    """Return events, steps and modified_properties frames for provisioning log ``records``.

    Records may be of any known shape (see ingest.fieldmap), mixed. ``locate(i)`` names the
    place of record ``i`` for error messages (default ``record i+1``). A record repeated in
    ``records`` is kept once: the last copy, with its own steps and properties only. Raises
    BadInput for a record that is not an object, has no id or no usable timestamp.
    """
    where = locate or (lambda i: f"record {i + 1}")
    ev, st, mp = extract(records, where)
    # Text columns as the columnar engine gives them; objects in text columns become JSON.
    for column in ev:
        if column not in ("duration_ms",):
            ev[column] = [_scalar(v) for v in ev[column]]
    st["details"] = [_details_text(v) for v in st["details"]]
    for column in ("name", "step_type", "status", "description"):
        st[column] = [_scalar(v) for v in st[column]]
    for column in ("old_value", "new_value"):
        mp[column] = [_value_text(v) for v in mp[column]]
    mp["name"] = [_scalar(v) for v in mp["name"]]
    return finish(
        pd.DataFrame(ev, dtype=object),
        pd.DataFrame(st, dtype=object),
        pd.DataFrame(mp, dtype=object),
        origin,
        where,
    )


def finish(
    ev: pd.DataFrame,
    st: pd.DataFrame,
    mp: pd.DataFrame,
    origin: str,
    where: Callable[[int], str],
) -> Frames:
    """Canonical frames from raw extracted columns (both engines end here).

    ``ev`` has one row per record, the raw value of every field-map column (text or None, the
    duration as given) and ``resource_id`` (the envelope's); ``st`` and ``mp``
    hold raw child columns with ``_parent``, the row of their record in ``ev``.
    """
    ev = ev.reset_index(drop=True)
    n = len(ev)
    ids = ev["id"]
    missing = ids.isna() | (ids == "")
    if missing.any():
        i = int(missing.to_numpy().nonzero()[0][0])
        raise BadInput(
            where(i), "record has no id", "provisioning records need an `id`; nothing was stored"
        )
    ts = ev["activity_at"]
    no_time = ts.isna() | (ts == "")
    if no_time.any():
        i = int(no_time.to_numpy().nonzero()[0][0])
        raise BadInput(
            where(i),
            f"record {ids.iloc[i]!r} has no activityDateTime (found None)",
            "nothing was stored",
        )
    times = parse_times(ts)
    bad = times.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise BadInput(
            where(i),
            f"activityDateTime {ts.iloc[i]!r} is not an ISO 8601 time in range",
            "nothing was stored",
        )

    # Last copy wins: keep each id's last row and only that row's children.
    keep = ~ids.duplicated(keep="last")
    if not keep.all():
        kept_rows = np.flatnonzero(keep.to_numpy())
        st = st[st[PARENT].isin(kept_rows)]
        mp = mp[mp[PARENT].isin(kept_rows)]
    out = pd.DataFrame({"id": ids, "activity_at": times})
    for f in fm.EVENT_FIELDS:
        if f.column in ("id", "activity_at"):
            continue
        raw = ev[f.column]
        if f.kind == fm.ENUM:
            canon, raw_out = _enum(raw, fm.ENUMS[f.enum or ""])
            if f.column in fm.NULLABLE_ENUMS:
                present = raw.notna() & (raw != "")
                canon, raw_out = canon.where(present, None), raw_out.where(present, None)
            out[f.column], out[f"{f.column}_raw"] = canon, raw_out
        elif f.kind == fm.IDENTITY:
            out[f.column] = _map(raw, fm.identity_type)
        elif f.kind == fm.DURATION:
            out[f.column] = _map(raw, fm.duration).astype("Int64")
        elif f.kind == fm.SNAKE:
            out[f.column] = _map(raw, fm.snake)
        else:
            out[f.column] = raw.where(raw.notna() & (raw != ""), None)
    tenant = _map(ev["resource_id"], fm.tenant_in_resource)
    out["tenant_id"] = out["tenant_id"].where(out["tenant_id"].notna(), tenant)
    out["error_code"] = out["error_code"].where(~out["error_code"].isin(fm.NO_ERROR_CODES), None)
    out["origin"] = origin

    steps = pd.DataFrame(
        {
            "event_id": ids.to_numpy()[st[PARENT].to_numpy(dtype=int)] if len(st) else [],
            "position": st["position"].to_numpy(),
            "name": st["name"].where(st["name"] != "", None).to_numpy(),
        }
    )
    steps["change_id"] = (
        out["change_id"].to_numpy()[st[PARENT].to_numpy(dtype=int)] if len(st) else []
    )
    steps["step_type"], steps["step_type_raw"] = (
        s.to_numpy() for s in _enum(st["step_type"], STEP_TYPE)
    )
    steps["status"], steps["status_raw"] = (s.to_numpy() for s in _enum(st["status"], STATUS))
    steps["description"] = st["description"].where(st["description"] != "", None).to_numpy()
    steps["details"] = st["details"].to_numpy()
    parents = st[PARENT].to_numpy(dtype=int)

    # Derived columns, from the canonical steps (the same rule for every engine).
    out["failed_step"] = _first_per_parent(
        n, parents, steps["name"].where((steps["status"] == "failure") & steps["name"].notna())
    )
    details = steps["details"].astype(object)
    has = details.notna()
    skip = _map(details.where(has & _contains(details, "skip")), _skip_reason)
    skip_first = _first_per_parent(n, parents, skip)
    out["skip_reason"] = skip_first.where(
        skip_first.notna(), out[fm.INNER_REASON].where(out["status"] == "skipped", None)
    )
    import_upn = (steps["step_type"] == "import") & has
    import_upn &= _contains(details, "principalname")
    step_upn = _map(details.where(import_upn), _upn_of)
    out["source_upn"] = out["source_upn"].where(
        out["source_upn"].notna(), _first_per_parent(n, parents, step_upn)
    )

    props = pd.DataFrame(
        {
            "event_id": ids.to_numpy()[mp[PARENT].to_numpy(dtype=int)] if len(mp) else [],
            "change_id": out["change_id"].to_numpy()[mp[PARENT].to_numpy(dtype=int)]
            if len(mp)
            else [],
            "name": mp["name"].where(mp["name"] != "", None).to_numpy(),
            "old_value": mp["old_value"].to_numpy(),
            "new_value": mp["new_value"].to_numpy(),
        }
    )
    if not keep.all():
        out = out[keep.to_numpy()]
    return {
        "events": schema.conform("events", out),
        "steps": schema.conform("steps", steps),
        "modified_properties": schema.conform("modified_properties", props),
    }


def _enum(values: pd.Series, table: dict[Any, str]) -> tuple[pd.Series, pd.Series]:
    """Normalise raw enum text, one call per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    pairs = [fm.norm_enum(v, table) for v in uniques] + [("unknown", None)]
    canon = np.array([p[0] for p in pairs], dtype=object)
    raw = np.array([p[1] for p in pairs], dtype=object)
    return (
        pd.Series(canon[codes], index=values.index, dtype=object),
        pd.Series(raw[codes], index=values.index, dtype=object),
    )


def _contains(texts: pd.Series, word: str) -> pd.Series:
    """Whether each text holds ``word`` in any casing (False for null), in Arrow's string
    kernels: a filter before parsing the texts that may hold a key spelled so."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.match_substring(
        pa.array(texts.to_numpy(dtype=object), type=pa.string(), from_pandas=True),
        word,
        ignore_case=True,
    )
    return pd.Series(found.fill_null(False).to_numpy(zero_copy_only=False), index=texts.index)


def _map(values: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value (null stays null)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([fn(v) for v in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


def _first_per_parent(n: int, parents: np.ndarray, values: pd.Series) -> pd.Series:
    """For each of ``n`` events, the first non-null value among its children (in order)."""
    out = np.full(n, None, dtype=object)
    vals = pd.Series(values.to_numpy(dtype=object), dtype=object)
    if len(vals) and vals.notna().any():
        first = vals.groupby(parents, sort=False).first()
        first = first[first.notna()]
        out[first.index.to_numpy(dtype=int)] = first.to_numpy(dtype=object)
    return pd.Series(out, dtype=object)


def _bag(details: Any) -> dict[str, Any]:
    if not isinstance(details, str) or not details.startswith("{"):
        return {}
    try:
        value = orjson.loads(details)
    except orjson.JSONDecodeError:
        return {}
    return ci(value) if isinstance(value, dict) else {}


def _skip_reason(details: Any) -> str | None:
    """A step's skip reason (`SkipReason` / `Skip Reason`, any casing) from its details text."""
    bag = _bag(details)
    for key in fm.SKIP_KEYS:
        v = bag.get(key)
        if v:
            return text(v)
    return None


def _upn_of(details: Any) -> str | None:
    """The user principal name in a details bag given as JSON text (the first key that is
    ``userPrincipalName`` in any casing, as :func:`ci` would keep it)."""
    if not isinstance(details, str) or not details.startswith("{"):
        return None
    try:
        value = orjson.loads(details)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    v = next((v for k, v in value.items() if k.lower() == fm.UPN_KEY), None)
    return None if v is None or v == "" else _scalar(v)
