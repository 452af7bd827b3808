"""The derived model: every rule of DESIGN "Definitions" applied once, read by every report.

Four tables, each a pure function of the canonical frames of the *whole* store (never of a
filtered selection, so a filter never redefines them):

- ``noise``: one row per event: ``event_id``, ``noise`` (bool), ``noise_reason``
  (``out_of_scope_skip``, ``noop_account_disabled`` or null) and ``excluded_by`` (the scoping
  filter that skipped an *assigned* user: an answer, never noise).
- ``cycles``: one row per (job, cycle) pair from all of its events (reports.cycles.cycle_table).
- ``matches``: ``request_id``, ``event_id``, ``gap_s``: each wiki SCIM request to the nearest
  Entra event about the same object within ±120 s (the one coding of that rule).
- ``objects``: one row per object: the coverage rows of every user principal (scope and why,
  wiki id and state, last status, verdict) plus the other source objects of events (groups).

:class:`Model` computes a part the first time it is asked for; the store-backed service
(reports.service) builds all four once per store version and keeps them beside the parts, so a
report reads them instead of deriving them again. :func:`model_of` returns the model of an
``Inputs`` (attached by the service, else computed lazily from the inputs' own frames).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reports.inputs import isin, last_rows, object_key, order_events, reindex

if TYPE_CHECKING:
    from reports import Inputs

PARTS: Final = ("noise", "cycles", "matches", "objects")
WINDOW: Final = pd.Timedelta(seconds=120)

NOISE_OUT_OF_SCOPE: Final = "out_of_scope_skip"
NOISE_NOOP_DISABLED: Final = "noop_account_disabled"

# Which tables (and columns of events) each part is computed from.
PART_TABLES: Final[dict[str, tuple[str, ...]]] = {
    "noise": ("events", "steps", "modified_properties"),
    "cycles": ("events", "sync_jobs"),
    "matches": ("events", "scim_requests"),
    "objects": ("events", "assignments", "group_members", "scim_resources"),
}
EVENT_COLUMNS: Final = (
    "id",
    "activity_at",
    "job_id",
    "cycle_id",
    "change_id",
    "service_principal_id",
    "action",
    "status",
    "error_code",
    "skip_reason",
    "source_id",
    "source_upn",
    "source_name",
    "source_type",
    "target_id",
)


# --- noise ---------------------------------------------------------------------------------

_SCOPING_NAME = re.compile(r"scoping filter '([^']*)'", re.IGNORECASE)
_SCOPING_FAILED = re.compile(
    r"(?:not in scope of the scoping filter|\"?scoping filter evaluation passed\"?\s*:\s*\"?false)",
    re.IGNORECASE,
)
_NOT_ASSIGNED = re.compile(
    r"\"(?:assigned to the application|isassigned)\"\s*:\s*\"?false", re.IGNORECASE
)
_CLAUSE_NAME = re.compile(r"\{\s*\\?\"([^\".]+)\.")


def scoping_filter_skips(events: pd.DataFrame, steps: pd.DataFrame) -> pd.Series:
    """Return, per skipped event of an *assigned* object that a scoping filter left out, its name.

    Entra's steps say it: the scoping step's ``Scoping filter evaluation passed: False`` (with
    ``Assigned to the application: True``) and the skip step's "not in scope of the scoping
    filter 'X'". The name is the quoted filter, else the clause's prefix, else ``(unnamed)``.
    """
    skipped = events.loc[(events["status"] == "skipped").fillna(False).astype(bool), "id"]
    if skipped.empty or steps.empty:
        return pd.Series(dtype="str")
    st = steps.iloc[np.flatnonzero(isin(steps["event_id"], skipped).to_numpy(bool))]
    if st.empty:
        return pd.Series(dtype="str")
    text = st["description"].fillna("").astype("str") + " " + st["details"].fillna("")
    per_event = _joined(text, st["event_id"])
    # Arrow's regex engine (RE2) on Arrow text: the patterns have nothing Python-only.
    failed = per_event.str.contains(_SCOPING_FAILED.pattern, case=False, regex=True)
    assigned = ~per_event.str.contains(_NOT_ASSIGNED.pattern, case=False, regex=True)
    hit = per_event.loc[failed & assigned].astype("object")
    if hit.empty:
        return pd.Series(dtype="str")
    name = hit.str.extract(_SCOPING_NAME, expand=False)
    name = name.fillna(hit.str.extract(_CLAUSE_NAME, expand=False)).fillna("(unnamed)")
    return name.astype("str")


def _joined(text: pd.Series, by: pd.Series) -> pd.Series:
    """Return ``text`` joined with spaces per value of ``by`` (first-seen order, rows in order):
    ``text.groupby(by, sort=False).agg(" ".join)``, by Arrow instead of a Python call per group.
    """
    codes, uniques = pd.factorize(by.astype("object").to_numpy())
    order = np.argsort(codes, kind="stable")
    offsets = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniques)))].astype(np.int64)
    values = pa.array(pd.Series(text, dtype="str").array).take(pa.array(order))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    joined = pc.binary_join(lists, pa.scalar(" ", values.type))
    return pd.Series(pd.array(joined, dtype="str"), index=pd.Index(uniques, dtype="object"))


def event_noise(
    events: pd.DataFrame, steps: pd.DataFrame, modified_properties: pd.DataFrame
) -> pd.DataFrame:
    """Return the noise part: ``event_id``, ``noise``, ``noise_reason``, ``excluded_by``.

    One row per event that is noise or that a scoping filter excluded; any other event is not
    noise (the part stays small: a million events have a few thousand such rows).
    """
    from reports.noise import is_noise_skip_reason, noop_account_disabled_events

    skipped = (events["status"] == "skipped").fillna(False).astype(bool)
    out_of_scope = skipped & is_noise_skip_reason(events["skip_reason"])
    filters = scoping_filter_skips(events, steps)
    excluded_by = reindex(filters, events["id"].to_numpy()).set_axis(events.index)
    # A scoping-filter skip of an assigned user is an answer ("excluded by scoping filter X").
    out_of_scope &= excluded_by.isna().to_numpy()
    is_update = (events["action"] == "update").fillna(False).astype(bool)
    not_failed = (events["status"] != "failure").fillna(True).astype(bool)
    noop = (
        is_update
        & not_failed
        & isin(events["id"], noop_account_disabled_events(modified_properties))
    )
    keep = (out_of_scope | noop).to_numpy(bool) | excluded_by.notna().to_numpy(bool)
    reason = _labels(
        (out_of_scope.to_numpy(bool), NOISE_OUT_OF_SCOPE),
        (noop.to_numpy(bool), NOISE_NOOP_DISABLED),
    )
    # Only the events that are noise or were excluded: the rest is "not noise" by absence.
    return pd.DataFrame(
        {
            "event_id": pd.array(events["id"].to_numpy()[keep], dtype="str"),
            "noise": (out_of_scope | noop).to_numpy(bool)[keep],
            "noise_reason": pd.array(reason[keep], dtype="str"),
            "excluded_by": pd.array(excluded_by.to_numpy()[keep], dtype="str"),
        }
    )


def _labels(*rules: tuple[npt.NDArray[np.bool_], str]) -> npt.NDArray[np.object_]:
    """Return per row the label of the first rule that holds, else None."""
    n = len(rules[0][0])
    out = np.full(n, None, dtype=object)
    for mask, label in reversed(rules):
        out[mask] = label
    return out


# --- matches -------------------------------------------------------------------------------

# (event column, request column, case-insensitive, priority) — lower priority wins ties.
_KEYS: Final = (
    ("target_id", "resource_id", False, 0),
    ("source_id", "external_id", False, 1),
    ("source_upn", "user_name", True, 2),
)


def naive(times: pd.Series) -> npt.NDArray[np.datetime64]:
    """Return UTC times as a naive datetime64[us] array (fast; tz-aware to_numpy makes objects)."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")


def match_positions(
    events: pd.DataFrame, requests: pd.DataFrame, window: pd.Timedelta = WINDOW
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (request position, event position, gap in µs): each request's event, if any.

    DESIGN "correlation": a request belongs to an event about the same object (path id = target
    id, externalId = source id, or userName = UPN case-insensitively) within ±``window`` of
    ``activity_at``; among several, the nearest in time (ties: path id, externalId, userName),
    so each request belongs to at most one event. ``merge_asof`` per key: millions in seconds.
    """
    empty = np.empty(0, dtype=np.int64)
    if events.empty or requests.empty:
        return empty, empty, empty
    req_t = pd.Series(naive(requests["received_at"]), index=requests.index)
    ev_t = pd.Series(naive(events["activity_at"]), index=events.index)
    found_req, found_ev, found_gap, found_p = [], [], [], []
    for ev_col, req_col, fold, priority in _KEYS:
        lmask = (requests[req_col].notna() & req_t.notna()).to_numpy(bool)
        rmask = (events[ev_col].notna() & ev_t.notna()).to_numpy(bool)
        if not lmask.any() or not rmask.any():
            continue
        lkey = requests[req_col].loc[lmask]
        rkey = events[ev_col].loc[rmask]
        if fold:
            lkey, rkey = lkey.str.lower(), rkey.str.lower()
        # Integer codes for the join key: merge_asof's `by` is much faster on ints.
        codes, _ = pd.factorize(pd.concat([lkey, rkey], ignore_index=True))
        nl = int(lmask.sum())
        left = pd.DataFrame(
            {"_t": req_t.loc[lmask].to_numpy(), "_k": codes[:nl], "_req": np.flatnonzero(lmask)}
        )
        right = pd.DataFrame(
            {"_t": ev_t.loc[rmask].to_numpy(), "_k": codes[nl:], "_ev": np.flatnonzero(rmask)}
        )
        right["_ev_t"] = right["_t"]
        m = pd.merge_asof(
            left.sort_values("_t", kind="stable"),
            right.sort_values("_t", kind="stable"),
            on="_t",
            by="_k",
            direction="nearest",
            tolerance=window,
        )
        hit = m["_ev"].notna().to_numpy(bool)
        found_req.append(m["_req"].to_numpy(np.int64)[hit])
        found_ev.append(m["_ev"].to_numpy()[hit].astype(np.int64))
        gap = (m["_t"] - m["_ev_t"]).abs().to_numpy()[hit]
        found_gap.append(gap.astype("timedelta64[us]").astype(np.int64))
        found_p.append(np.full(int(hit.sum()), priority, dtype=np.int64))
    if not found_req:
        return empty, empty, empty
    req = np.concatenate(found_req)
    ev = np.concatenate(found_ev)
    gap = np.concatenate(found_gap)
    prio = np.concatenate(found_p)
    order = np.lexsort((prio, gap, req))
    req, ev, gap = req[order], ev[order], gap[order]
    if len(req) == 0:
        return req, ev, gap
    first = np.r_[True, req[1:] != req[:-1]]
    return req[first], ev[first], gap[first]


def match_requests(
    events: pd.DataFrame, scim_requests: pd.DataFrame, window: pd.Timedelta = WINDOW
) -> pd.DataFrame:
    """Return the matches part: ``request_id``, ``event_id``, ``gap_s`` (see match_positions)."""
    requests = scim_requests.drop_duplicates("request_id", keep="last")
    requests = requests.loc[requests["received_at"].notna()]
    req_pos, ev_pos, gap = match_positions(
        events.reset_index(drop=True), requests.reset_index(drop=True), window
    )
    return pd.DataFrame(
        {
            "request_id": pd.array(requests["request_id"].to_numpy()[req_pos], dtype="str"),
            "event_id": pd.array(events["id"].to_numpy()[ev_pos], dtype="str"),
            "gap_s": gap.astype("float64") / 1e6,
        }
    )


# --- objects -------------------------------------------------------------------------------

SCOPE_REASONS: Final = {
    "direct": "assigned directly with an app role",
    "group": "a direct member of a group assigned with an app role",
    "nested_group": "reached only through a nested group, which Entra does not provision",
    "default_access": "assigned with Default Access, which Entra does not provision",
    "none": "not assigned to the app, directly or by a group",
}
OBJECT_COLUMNS: Final = (
    "object_key",
    "object_type",
    "principal_id",
    "upn",
    "name",
    "target_id",
    "in_scope",
    "scope_via",
    "scope_reason",
    "excluded_by",
    "wiki_id",
    "wiki_state",
    "last_status",
    "last_at",
    "last_error_code",
    "verdict",
    "events",
    "coverage",
)


def objects_table(inputs: Inputs, noise: pd.DataFrame) -> pd.DataFrame:
    """Return the objects part: coverage's user rows plus the other objects events name."""
    from reports.coverage import coverage_table, in_scope_groups

    events = inputs.events
    cov = coverage_table(events, inputs.assignments, inputs.group_members, inputs.scim_resources)
    ev = order_events(events)
    keys = object_key(ev)
    per_key = ev.assign(_key=keys)
    last = last_rows(per_key, "_key").set_index("_key")
    counts = per_key.groupby("_key", sort=False).size()
    # The scoping filter of each object's latest event, when that event is a filter skip.
    excluded = noise.set_index("event_id")["excluded_by"]
    last_excluded = reindex(excluded, last["id"].to_numpy()).set_axis(last.index)

    users = cov.assign(
        object_key=cov["principal_id"].fillna("wiki:" + cov["wiki_id"].astype("str")),
        object_type="user",
        coverage=True,
    )
    users["target_id"] = reindex(last["target_id"], users["object_key"].to_numpy()).to_numpy()
    users["events"] = reindex(counts, users["object_key"].to_numpy()).fillna(0).to_numpy()
    users["excluded_by"] = reindex(last_excluded, users["object_key"].to_numpy()).to_numpy()
    rest = last.loc[~isin(pd.Series(last.index, index=last.index), users["object_key"])]
    groups = in_scope_groups(inputs.assignments)
    is_group = (rest["source_type"] == "group").fillna(False).astype(bool)
    in_scope = isin(rest["source_id"], groups) & is_group
    others = pd.DataFrame(
        {
            "object_key": rest.index.astype("str"),
            "object_type": rest["source_type"].fillna("other").astype("str").to_numpy(),
            "principal_id": rest["source_id"].to_numpy(),
            "upn": rest["source_upn"].to_numpy(),
            "name": rest["source_name"].to_numpy(),
            "target_id": rest["target_id"].to_numpy(),
            "in_scope": in_scope.to_numpy(bool),
            "scope_via": _labels(
                (in_scope.to_numpy(bool), "direct"), (is_group.to_numpy(bool), "none")
            ),
            "excluded_by": reindex(last_excluded, rest.index).to_numpy(),
            "wiki_id": None,
            "wiki_state": None,
            "last_status": rest["status"].to_numpy(),
            "last_at": rest["activity_at"].to_numpy(),
            "last_error_code": None,
            "verdict": None,
            "events": reindex(counts, rest.index).to_numpy(),
            "coverage": False,
        }
    )
    out = pd.concat([users, others], ignore_index=True) if len(others) else users
    out["scope_reason"] = out["scope_via"].map(SCOPE_REASONS)
    filt = out["excluded_by"].notna()
    out.loc[filt, "scope_reason"] = "excluded by scoping filter " + out.loc[filt, "excluded_by"]
    out = out.reindex(columns=list(OBJECT_COLUMNS))
    return _typed_objects(out)


def _typed_objects(out: pd.DataFrame) -> pd.DataFrame:
    text = [
        "object_key",
        "object_type",
        "principal_id",
        "upn",
        "name",
        "target_id",
        "scope_via",
        "scope_reason",
        "excluded_by",
        "wiki_id",
        "wiki_state",
        "last_status",
        "last_error_code",
        "verdict",
    ]
    out = out.astype({c: "str" for c in text})
    out["in_scope"] = out["in_scope"].fillna(False).astype(bool)
    out["coverage"] = out["coverage"].fillna(False).astype(bool)
    out["events"] = pd.to_numeric(out["events"]).fillna(0).astype("int64")
    out["last_at"] = pd.to_datetime(out["last_at"], utc=True).astype("datetime64[us, UTC]")
    return out.reset_index(drop=True)


# --- the model -----------------------------------------------------------------------------


class Model:
    """The derived tables of one set of canonical frames (a store version, or test inputs).

    Give ``parts`` (already computed, e.g. read back from the store) or ``source`` (the frames to
    compute missing parts from, lazily); a part asked for is computed once and kept.
    """

    def __init__(
        self,
        source: Inputs | None = None,
        parts: dict[str, pd.DataFrame] | None = None,
        loader: Callable[[str, Sequence[str] | None], pd.DataFrame] | None = None,
    ) -> None:
        self._source = source
        self._parts: dict[str, pd.DataFrame] = dict(parts or {})
        self._loader = loader  # reads a kept part back (only the parts a report asks for)
        self._seen = self._fingerprint()

    def _fingerprint(self) -> tuple[int, ...]:
        # In-memory inputs may be given new frames between two questions (tests do): the parts
        # computed from the old frames are then dropped. A store version never changes.
        if self._source is None:
            return ()
        from ingest.schema import TABLES

        # The raw attribute: a table the store has not read yet is not read for this.
        return tuple(id(object.__getattribute__(self._source, t)) for t in TABLES)

    def _frame(self, table: str) -> pd.DataFrame:
        if self._source is None:
            raise LookupError(f"the model has no source frames to compute from ({table})")
        return self._source.table(table)

    def part(self, name: str) -> pd.DataFrame:
        """Return part ``name`` (noise, cycles, matches, objects), computing it once."""
        if self._source is not None:
            now = self._fingerprint()
            if now != self._seen:
                self._parts, self._seen = {}, now
        if name not in self._parts:
            self._parts[name] = self._loader(name, None) if self._loader else self._compute(name)
        return self._parts[name]

    def columns(self, name: str, columns: Sequence[str]) -> pd.DataFrame:
        """Return only ``columns`` of part ``name``: a kept part not yet read is read column-wise
        (what a report reads of a million objects), else the part's columns are selected."""
        if name not in self._parts and self._loader is not None and self._source is None:
            return self._loader(name, list(columns))
        return self.part(name)[list(columns)]

    def _compute(self, name: str) -> pd.DataFrame:
        if name == "noise":
            return event_noise(
                self._frame("events"), self._frame("steps"), self._frame("modified_properties")
            )
        if name == "cycles":
            from reports.cycles import cycle_table

            return cycle_table(self._frame("events"), self._frame("sync_jobs"))
        if name == "matches":
            return match_requests(self._frame("events"), self._frame("scim_requests"))
        if name == "objects":
            assert self._source is not None
            return objects_table(self._source.unguarded(), self.part("noise"))
        raise KeyError(f"unknown model part {name!r}; parts: {', '.join(PARTS)}")

    @property
    def noise(self) -> pd.DataFrame:
        """Per event: noise flag, reason, and the scoping filter that excluded it."""
        return self.part("noise")

    @property
    def cycles(self) -> pd.DataFrame:
        """One row per (job, cycle) from all of its events."""
        return self.part("cycles")

    @property
    def matches(self) -> pd.DataFrame:
        """Each wiki request and the Entra event it answers (nearest within ±120 s)."""
        return self.part("matches")

    @property
    def objects(self) -> pd.DataFrame:
        """One row per object: ids, names, scope and why, wiki state, last status, verdict."""
        return self.part("objects")

    def computed(self) -> dict[str, pd.DataFrame]:
        """Return every part (computing the missing ones)."""
        return {name: self.part(name) for name in PARTS}

    # --- lookups every report shares ---------------------------------------------------

    def noise_of(self, event_ids: pd.Series) -> pd.Series:
        """Return the noise flag of each event id (aligned to ``event_ids``; unknown = False)."""
        noisy = self.noise.loc[self.noise["noise"].astype(bool), "event_id"]
        return isin(event_ids, noisy)

    def column_of(self, event_ids: pd.Series, column: str) -> pd.Series:
        """Return the noise part's ``column`` for each event id (aligned to ``event_ids``)."""
        values = self.noise.set_index("event_id")[column]
        values = values.loc[~values.index.duplicated(keep="last")]
        return reindex(values, event_ids.to_numpy()).set_axis(event_ids.index)


def model_of(inputs: Inputs) -> Model:
    """Return the model attached to ``inputs`` (by the service), else one computed from them."""
    model: Model | None = object.__getattribute__(inputs, "_model")
    if model is None:
        model = Model(source=inputs)
        object.__setattr__(inputs, "_model", model)
    return model


def drop_noise_events(
    events: pd.DataFrame, model: Model, include_noise: bool
) -> tuple[pd.DataFrame, int]:
    """Return events without the model's noise (unless ``include_noise``) and how many hidden."""
    if include_noise or events.empty:
        return events, 0
    mask = model.noise_of(events["id"]).to_numpy(bool)
    hidden = int(mask.sum())
    return (events.loc[~mask] if hidden else events), hidden


def selected_cycles(cycles: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Return the model's cycles that have at least one of ``events`` (the selection)."""
    if cycles.empty:
        return cycles
    ev = events.loc[events["cycle_id"].notna(), ["job_id", "cycle_id"]]
    pairs = ev["job_id"].fillna("").astype("str") + "\x1f" + ev["cycle_id"].astype("str")
    mine = cycles["job_id"].fillna("").astype("str") + "\x1f" + cycles["cycle_id"].astype("str")
    return cycles.loc[isin(mine, pairs.unique()).to_numpy(bool)].reset_index(drop=True)


def cycle_pairs(events: pd.DataFrame) -> int:
    """Return how many (job, cycle) pairs ``events`` touch (DESIGN: a cycle is such a pair)."""
    ev = events.loc[events["cycle_id"].notna(), ["job_id", "cycle_id"]]
    return len(ev.drop_duplicates()) if len(ev) else 0


# --- the wiki's answer to a failure ---------------------------------------------------------

SCIM_ERROR_COLUMNS: Final = ("scim_status", "scim_type", "scim_detail", "scim_source")


def event_scim_errors(
    events: pd.DataFrame, scim_requests: pd.DataFrame, model: Model
) -> pd.DataFrame:
    """Return, aligned to ``events``, the wiki's SCIM error that explains each event, if any.

    First the wiki's own answer: the first request answered >= 400 among those the model matched
    to the event (``scim_source`` = ``wiki_request``); else the SCIM error Entra quotes in the
    event's reason or additional details (``entra_reason``).
    """
    from reports.owners import embedded_scim_error

    out = pd.DataFrame(index=events.index)
    matches = model.matches
    mine = matches.loc[isin(matches["event_id"], events["id"])]
    wiki = pd.DataFrame(columns=["scim_status", "scim_type", "scim_detail"])
    if not mine.empty and not scim_requests.empty:
        req = scim_requests.drop_duplicates("request_id", keep="last").set_index("request_id")
        req = req.reindex(mine["request_id"].to_numpy())
        answered = mine.assign(
            _status=req["status_code"].to_numpy(),
            _type=req["scim_type"].to_numpy(),
            _detail=req["detail"].to_numpy(),
            _at=req["received_at"].to_numpy(),
        )
        errors = answered.loc[(answered["_status"] >= 400).fillna(False).astype(bool)]
        errors = errors.sort_values(["event_id", "_at"], kind="stable")
        first = errors.drop_duplicates("event_id").set_index("event_id")
        wiki = pd.DataFrame(
            {
                "scim_status": first["_status"].astype("Int64"),
                "scim_type": first["_type"].astype("str"),
                "scim_detail": first["_detail"].astype("str"),
            }
        )
    got = wiki.reindex(events["id"].to_numpy()).set_axis(events.index)
    quoted = embedded_scim_error(events["error_reason"])
    if "error_additional_details" in events.columns:
        nothing = (quoted["scim_status"].isna() & quoted["scim_type"].isna()).to_numpy(bool)
        if nothing.any():
            extra = embedded_scim_error(events["error_additional_details"])
            for col in quoted.columns:
                quoted[col] = quoted[col].where(~nothing, extra[col])
    has_wiki = got["scim_status"].notna().to_numpy(bool)
    out["scim_status"] = got["scim_status"].astype("Int64").where(has_wiki, quoted["scim_status"])
    out["scim_type"] = got["scim_type"].astype("str").where(has_wiki, quoted["scim_type"])
    out["scim_detail"] = got["scim_detail"].astype("str").where(has_wiki, quoted["scim_detail"])
    has_quoted = (quoted["scim_status"].notna() | quoted["scim_type"].notna()).to_numpy(bool)
    source = _labels((has_wiki, "wiki_request"), (has_quoted, "entra_reason"))
    out["scim_source"] = pd.array(source, dtype="str")
    return out
