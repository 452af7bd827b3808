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

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from ingest.kept import MODEL_FORMAT as KEPT_MODEL_FORMAT
from reports.inputs import isin, reindex
from reports.model_sql import (
    app_scope_sql,
    cycles_sql,
    event_marks_sql,
    facts_sql,
    frame_views,
    groups_sql,
    matches_sql,
    noise_sql,
    objects_sql,
    timeline_sql,
)

if TYPE_CHECKING:
    from reports import Filters, Inputs
    from reports.sql import StoredRows

T = TypeVar("T")

PARTS: Final = (
    "noise",
    "cycles",
    "matches",
    "objects",
    "facts",
    "groups",
    "app_scope",
    "recent_failures",
    "timeline",
)
# What the model holds and how: part of the kept model's directory name (ingest.kept, where a
# fresh CLI process finds a version's kept answers without importing this module).
MODEL_FORMAT: Final = KEPT_MODEL_FORMAT
WINDOW: Final = pd.Timedelta(seconds=120)
# Rows a report answers unfiltered, kept beside a store's model (reports.query.build_model, by
# the reports' own SQL) and read back by an unfiltered ask: per object (users, noise hidden and
# shown) and per event and unexplained request (correlation, each row's noise flag beside it).
# Beside each, the JSON text of its answered rows (reports.export.keep_json_text).
ROW_PARTS: Final = ("users_rows", "users_rows_noise", "correlation_rows")

# Reports whose whole unfiltered answer (no filter or parameter, noise hidden; a frame alone,
# and they read no ``now``) the model keeps, as the service asked it while the model was built
# (reports.query.keep_answers): an unfiltered ask reads it back (Model.kept_answer). Their time
# is pandas work over many rows, which no kept SQL answer saves.
KEPT_ANSWERS: Final = ("scim-traffic", "failures")
# ... for a version where no table they read holds more than this many rows: building one reads
# them into pandas (scim-traffic at 1.6M requests: ~0.6 GB), which a larger store's model build,
# bounded by its memory limit, should not (there they are computed when asked, as before).
KEPT_ANSWER_ROWS: Final = 2_000_000
# Reports asked unfiltered while the model is built, so that the small answers of their SQL over
# every stored row are kept with it (reports.sql.recording_answers) and read back by later asks.
ASKED_AT_BUILD: Final = (
    "summary",
    "cycles",
    "failures",
    "skips",
    "estimate",
    "quarantine-risk",
    "overview",
)

# Which tables each part is computed from (the columns: reports.model_sql.VIEW_COLUMNS).
PART_TABLES: Final[dict[str, tuple[str, ...]]] = {
    "noise": ("events", "steps", "modified_properties"),
    "cycles": ("events", "sync_jobs"),
    "matches": ("events", "scim_requests"),
    "objects": ("events", "assignments", "group_members", "scim_resources"),
    "facts": ("events", "assignments", "group_members"),
    "groups": ("events", "steps"),
    "app_scope": ("assignments", "group_members"),
    "recent_failures": ("events",),
    "timeline": ("events", "steps"),
}


# --- computing parts: the rules are SQL (reports.model_sql), run over frames or a store ------


def frame_connection(frames: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection whose views are ``frames`` (the model's SQL reads them)."""
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    frame_views(con, frames)
    return con


def part_query(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Return the SQL of part ``name`` on ``con`` (not cycles: reports.cycles finishes its
    aggregates). The objects part's steps are run here first, each into a table."""
    if name == "noise":
        return noise_sql()
    if name == "facts":
        from reports.users import users_counts_sql

        con.execute(
            "CREATE OR REPLACE TEMP VIEW noise_ids AS SELECT event_id FROM noise WHERE noise"
        )
        return facts_sql(users_counts_sql())
    if name == "matches":
        return matches_sql()
    if name == "groups":
        return groups_sql()
    if name == "timeline":
        return timeline_sql()
    if name == "app_scope":
        apps = con.sql(
            "SELECT DISTINCT service_principal_id FROM assignments "
            "WHERE service_principal_id IS NOT NULL ORDER BY 1"
        ).fetchall()
        return app_scope_sql([str(a[0]) for a in apps])
    if name == "objects":
        steps, final = objects_sql(SCOPE_REASONS)
        for table, sql in steps:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
        return final
    raise KeyError(f"unknown model part {name!r}; parts: {', '.join(PARTS)}")


def cycles_frame(con: duckdb.DuckDBPyConnection, sync_jobs: pd.DataFrame) -> pd.DataFrame:
    """Return the cycles part from the ``events`` view (aggregated in SQL, finished here)."""
    from reports.cycles import _STATUSES, _empty, finish_cycles

    agg = con.sql(cycles_sql(_STATUSES)).to_arrow_table().to_pandas()
    if agg.empty:
        return _empty()
    return finish_cycles(agg, sync_jobs)


def typed_part(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Return a part read from SQL with the dtypes every report expects."""
    if name == "noise":
        return frame.astype(
            {"event_id": "str", "noise": "bool", "noise_reason": "str", "excluded_by": "str"}
        )
    if name == "matches":
        return frame.astype({"request_id": "str", "event_id": "str", "gap_s": "float64"})
    if name == "objects":
        return _typed_objects(frame)
    if name == "app_scope":
        return frame.astype(
            {
                "service_principal_id": "str",
                "assignments": "int64",
                "users": "int64",
                "groups": "int64",
            }
        )
    if name == "facts":
        out = frame.astype(
            {
                "objects": "int64",
                "assignments": "int64",
                "users_in_scope": "int64",
                "groups_in_scope": "int64",
                "users_rows": "int64",
                "users_rows_quiet": "int64",
                "noise_events": "int64",
            }
        )
        out["latest_at"] = pd.to_datetime(out["latest_at"], utc=True)
        return out
    return frame


def _part_from_frames(
    name: str, frames: dict[str, pd.DataFrame], noise: pd.DataFrame | None = None
) -> pd.DataFrame:
    con = frame_connection({t: frames[t] for t in PART_TABLES[name] if t != "sync_jobs"})
    try:
        if name == "cycles":
            return cycles_frame(con, frames["sync_jobs"])
        if name in ("objects", "facts", "groups", "timeline"):
            assert noise is not None
            con.register("noise", noise[["event_id", "excluded_by", "noise"]])
        return typed_part(name, con.sql(part_query(con, name)).to_arrow_table().to_pandas())
    finally:
        con.close()


def kept_rows(
    model: Model, name: str, columns: Sequence[str], where: str = "TRUE"
) -> StoredRows | None:
    """Return ``columns`` of the rows kept in ``ROW_PARTS`` part ``name`` (those ``where``
    holds, in kept order), None when the model keeps none (computed in memory)."""
    from reports.sql import StoredRows

    path = model.file(name)
    return None if path is None else StoredRows(path, tuple(columns), where)


def event_noise(
    events: pd.DataFrame, steps: pd.DataFrame, modified_properties: pd.DataFrame
) -> pd.DataFrame:
    """Return the noise part of these frames: ``event_id``, ``noise``, ``noise_reason``,
    ``excluded_by`` (reports.model_sql.noise_sql: one row per event that is noise or that a
    scoping filter excluded; any other event is not noise)."""
    frames = {"events": events, "steps": steps, "modified_properties": modified_properties}
    return _part_from_frames("noise", frames)


def _labels(*rules: tuple[npt.NDArray[np.bool_], str]) -> npt.NDArray[np.object_]:
    """Return per row the label of the first rule that holds, else None."""
    n = len(rules[0][0])
    out = np.full(n, None, dtype=object)
    for mask, label in reversed(rules):
        out[mask] = label
    return out


# --- matches -------------------------------------------------------------------------------


def naive(times: pd.Series) -> npt.NDArray[np.datetime64]:
    """Return UTC times as a naive datetime64[us] array (fast; tz-aware to_numpy makes objects)."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")


def match_requests(
    events: pd.DataFrame, scim_requests: pd.DataFrame, window: pd.Timedelta = WINDOW
) -> pd.DataFrame:
    """Return the matches of these frames: ``request_id``, ``event_id``, ``gap_s``
    (reports.model_sql.matches_sql: each request to the nearest event about the same object
    within ±``window``)."""
    frames = {"events": events, "scim_requests": scim_requests}
    if window == WINDOW:
        return _part_from_frames("matches", frames)
    con = frame_connection(frames)
    try:
        sql = matches_sql(int(window / pd.Timedelta(microseconds=1)))
        return typed_part("matches", con.sql(sql).to_arrow_table().to_pandas())
    finally:
        con.close()


def match_positions(
    events: pd.DataFrame, requests: pd.DataFrame, window: pd.Timedelta = WINDOW
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (request position, event position, gap in µs): each request's event, if any.

    ``requests`` hold one row per request id (positions are rows of ``events``/``requests``).
    """
    from reports.inputs import positions

    m = match_requests(events, requests, window)
    r = positions(m["request_id"], requests["request_id"])
    e = positions(m["event_id"], events["id"])
    both = ~np.isnan(r) & ~np.isnan(e)
    gap = np.round(m["gap_s"].to_numpy("float64")[both] * 1e6).astype(np.int64)
    return r[both].astype(np.int64), e[both].astype(np.int64), gap


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
    """Return the objects part of ``inputs``' frames (reports.model_sql.objects_sql): coverage's
    user rows plus the other objects events name; ``noise`` gives each latest event's filter."""
    frames = {t: inputs.table(t) for t in PART_TABLES["objects"]}
    return _part_from_frames("objects", frames, noise)


def objects_in_place(inputs: Inputs, noise_file: str) -> pd.DataFrame | None:
    """Return :func:`objects_table` of ``inputs``' selection computed where it lies: the
    model's own objects SQL over the stored tables as the service reads them (filters pushed
    down), the noise part read from its kept file; None when a table is not a stored one."""
    from reports.model_sql import VIEW_COLUMNS, _ident, _lit, _sql_type

    scans = {t: inputs.scan(t) for t in PART_TABLES["objects"]}
    if any(scan is None for scan in scans.values()):
        return None
    con = next(scan for scan in scans.values() if scan is not None).con
    made: list[tuple[str, str]] = []  # (VIEW or TABLE, name): dropped after
    try:
        for table, scan in scans.items():
            assert scan is not None
            params = list(scan.params)
            probe = f"SELECT * FROM ({scan.sql}) LIMIT 0"  # noqa: S608 (the service's own SQL)
            have = set(con.sql(probe, params=params).columns)
            cols = ", ".join(
                _ident(c) if c in have else f"NULL::{_sql_type(table, c)} AS {_ident(c)}"
                for c in VIEW_COLUMNS[table]
            )
            # ``_row`` orders rows as the frames the service reads would (a stored position).
            view = f"SELECT {cols}, _row AS _pos FROM ({scan.sql})"  # noqa: S608 (identifiers)
            con.register(table, con.sql(view, params=params))  # a view of this connection only
            made.append(("VIEW", table))
        con.execute(
            "CREATE OR REPLACE TEMP VIEW noise AS "  # noqa: S608 (a quoted path)
            f"SELECT event_id, excluded_by FROM read_parquet({_lit(noise_file)})"
        )
        made.append(("VIEW", "noise"))
        steps, _ = objects_sql(SCOPE_REASONS)
        made.extend(("TABLE", name) for name, _ in steps)
        frame = con.sql(part_query(con, "objects")).to_arrow_table().to_pandas()
    finally:
        for kind, name in reversed(made):
            con.execute(f"DROP {kind} IF EXISTS {_ident(name)}")
    return typed_part("objects", frame)


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


class Once:
    """Values computed once per key and kept: a second thread asking for a key being computed
    waits for the first (the one-user answers of a page are computed side by side), then takes
    its value; when the first failed, it computes the value itself. ``limit``: at most that
    many kept, the least recently asked dropped first."""

    def __init__(self, limit: int | None = None) -> None:
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._computing: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return the value kept for ``key``, else ``compute()`` (kept)."""
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    done: T = self._done[key]
                    return done
                other = self._computing.get(key)
                if other is None:
                    self._computing[key] = threading.Event()
                    break
            other.wait()
        try:
            value = compute()
            with self._lock:
                self._done[key] = value
                while self._limit is not None and len(self._done) > self._limit:
                    self._done.popitem(last=False)
        finally:
            with self._lock:
                self._computing.pop(key).set()
        return value

    def clear(self) -> None:
        """Forget every kept value."""
        with self._lock:
            self._done.clear()


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
        files: dict[str, str] | None = None,
        root: Path | None = None,
        rows: Once | None = None,
    ) -> None:
        self._source = source
        # A one-user slice's model (reports.query.user_slice): what is derived from the slice's
        # rows, kept for every slice model over the same rows (see :meth:`of_rows`).
        self._rows = rows
        # Where the model is kept (with its one-user copies, reports.query.user_slice); None
        # for a model computed in memory.
        self.root = root
        self._parts: dict[str, pd.DataFrame] = dict(parts or {})
        self._loader = loader  # reads a kept part back (only the parts a report asks for)
        self._files = dict(files or {})  # where kept parts lie (Parquet), for SQL to scan
        self._memo: dict[str, Any] = {}  # small answers derived from parts (remember)
        self._seen = self._fingerprint()

    def _fingerprint(self) -> tuple[int, ...]:
        # In-memory inputs may be given new frames between two questions (tests do): the parts
        # computed from the old frames are then dropped. A store version never changes.
        if self._source is None:
            return ()
        from ingest.schema import TABLES

        # The raw attribute: a table the store has not read yet is not read for this.
        return tuple(id(object.__getattribute__(self._source, t)) for t in TABLES)

    def _fresh(self) -> None:
        """Drop what was computed from frames the source no longer holds."""
        if self._source is not None:
            now = self._fingerprint()
            if now != self._seen:
                self._parts, self._memo, self._seen = {}, {}, now

    def _frame(self, table: str) -> pd.DataFrame:
        if self._source is None:
            raise LookupError(f"the model has no source frames to compute from ({table})")
        return self._source.table(table)

    def part(self, name: str) -> pd.DataFrame:
        """Return part ``name`` (noise, cycles, matches, objects), computing it once."""
        self._fresh()
        if name not in self._parts:
            self._parts[name] = self._loader(name, None) if self._loader else self._compute(name)
        return self._parts[name]

    def remember(self, key: str, compute: Callable[[Model], T]) -> T:
        """Return ``compute(self)``, computed once per model: a small answer derived from its
        parts whatever the filters (e.g. counts over a million objects, read column-wise)."""
        self._fresh()
        if key not in self._memo:
            self._memo[key] = compute(self)
        return self._memo[key]

    def of_rows(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return ``compute()``, computed once for the rows this model was restricted to when
        it is a one-user slice's (every one-user answer over the same rows shares it: a page's
        answers about one user derive their timeline once); else computed on every call.

        ``key`` must name everything ``compute`` reads beyond the slice's rows (the user, the
        filters): every question over a slice reads the same rows, by the same rule.
        """
        return compute() if self._rows is None else self._rows.get(key, compute)

    def columns(self, name: str, columns: Sequence[str]) -> pd.DataFrame:
        """Return only ``columns`` of part ``name``: a kept part not yet read is read column-wise
        (what a report reads of a million objects), else the part's columns are selected."""
        if name not in self._parts and self._loader is not None and self._source is None:
            return self._loader(name, list(columns))
        return self.part(name)[list(columns)]

    def describes(self, inputs: Inputs, tables: Sequence[str]) -> bool:
        """Return True when this model's parts are of every row ``inputs`` hold of ``tables``
        (under the question's filters): the model was computed from these very inputs, or it is
        a kept model and those tables are still read in place from the store (the service's
        read of the version; a table already read into a frame may have been narrowed)."""
        if self._source is not None:
            return self._source is inputs
        return bool(self._files) and all(inputs.scan(t) is not None for t in tables)

    def file(self, name: str) -> str | None:
        """Return the Parquet file part ``name`` is kept in (SQL reads it in place), or None
        when the part is not kept on disk (in-memory inputs: use :meth:`columns`)."""
        return self._files.get(name) if self._source is None else None

    def kept_answer(self, report: str, inputs: Inputs) -> pd.DataFrame | None:
        """Return the unfiltered answer of ``report`` (KEPT_ANSWERS) kept with this model, None
        when none is kept (in-memory inputs, a model kept before the answer, or ``inputs``
        that are not the version's rows read in place)."""
        if report not in KEPT_ANSWERS or self.root is None or self._source is not None:
            return None
        from reports import REPORTS

        if not self.describes(inputs, REPORTS[report].tables):
            return None
        return read_answer(self.root, report)

    def _compute(self, name: str) -> pd.DataFrame:
        if name not in PARTS:
            raise KeyError(f"unknown model part {name!r}; parts: {', '.join(PARTS)}")
        if name == "recent_failures":
            from reports import Filters, Inputs
            from reports.recent_failures import KEPT, recent_sql
            from reports.sql import over

            return over(
                Inputs(events=self._frame("events")), recent_sql(Filters(), KEPT), ["events"]
            )
        frames = {t: self._frame(t) for t in PART_TABLES[name]}
        noise = self.part("noise") if name in ("objects", "facts", "groups", "timeline") else None
        return _part_from_frames(name, frames, noise)

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

    @property
    def groups(self) -> pd.DataFrame:
        """One row per (job, app) of events: counts the landing answers read (groups_sql)."""
        return self.part("groups")

    @property
    def timeline(self) -> pd.DataFrame:
        """One row per event in time order: what time-range answers read (timeline_sql)."""
        return self.part("timeline")

    @property
    def facts(self) -> pd.DataFrame:
        """One row: what an unfiltered estimate reads of the whole store (latest event time,
        objects seen, assignments, users and groups in scope)."""
        return self.part("facts")

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


def answer_file(root: Path, report: str) -> Path:
    """Return where a kept model at ``root`` keeps ``report``'s unfiltered answer."""
    return root / f"answer-{report}.parquet"


def read_answer(root: Path, report: str) -> pd.DataFrame | None:
    """Return ``report``'s answer kept at ``root`` (None: none kept)."""
    path = answer_file(root, report)
    return read_frame(path) if path.exists() else None


def read_frame(path: Path) -> pd.DataFrame:
    """Return a kept answer's frame as written (pandas' own dtypes, kept in the file)."""
    import pyarrow.parquet as pq

    frame: pd.DataFrame = pq.read_table(path).to_pandas()
    return frame


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


# --- answers the groups part gives ------------------------------------------------------------


def selected_groups(inputs: Inputs, filters: Filters) -> pd.DataFrame | None:
    """Return the model's groups (one row per job and app of events) that ``filters`` select,
    or None when they do not answer for the selected events: a time, action or status filter
    (it cuts inside a group), or events that are not every event of the model's source under
    ``filters`` (frames already narrowed, or read from elsewhere).
    """
    if filters.since is not None or filters.until is not None:
        return None
    if filters.actions or filters.statuses:
        return None
    model = model_of(inputs)
    if not model.describes(inputs, ("events",)):
        return None
    groups = model.groups
    return groups.loc[filters.mask(groups).to_numpy(bool)]


def whole_jobs(selected: pd.DataFrame, groups: pd.DataFrame) -> bool:
    """Return True when every job of the ``selected`` groups has all of its groups selected
    (null and "" are one job, as the per-job counts take them)."""
    jobs = set(selected["job_id"].fillna("").astype("str"))
    return int(groups["job_id"].fillna("").astype("str").isin(jobs).sum()) == len(selected)


# --- answers the timeline part gives ----------------------------------------------------------


def timeline_of(
    inputs: Inputs, *, noise: bool = False, reference: bool = False
) -> tuple[str, list[str], dict[str, pd.DataFrame]]:
    """Return the events of ``inputs`` with the timeline part's columns (reports.model_sql.
    TIMELINE_COLUMNS, ``_row``, ``_key``, ``_noise``, ``_ref``) as (query, tables, frames) for
    reports.sql.over; the caller selects with its filters (reports.sql.filter_sql).

    The kept timeline part when the model keeps it and its events are every event the inputs
    read in place (reports.model.Model.describes): read where it lies, a time range reads only
    its row groups, and no step or noise row is read. Else the same columns computed over the
    inputs' events: ``noise`` adds ``_noise`` (the model's noise part), ``reference`` adds
    ``_ref`` (reading ``steps``).
    """
    from reports.sql import literal

    model = model_of(inputs)
    path = _kept_timeline(inputs)
    if path is not None:
        return f"SELECT * FROM read_parquet({literal(path)})", [], {}  # noqa: S608 (a quoted path)
    frames: dict[str, pd.DataFrame] = {}
    if noise:
        part = model.noise
        frames["noise_ids"] = part.loc[part["noise"].astype(bool), ["event_id"]].dropna()
    query = event_marks_sql(
        noise="SELECT event_id FROM noise_ids" if noise else None, reference=reference
    )
    return query, (["events", "steps"] if reference else ["events"]), frames


def _kept_timeline(inputs: Inputs) -> str | None:
    """Return the kept timeline part's file when it stands for every event ``inputs`` read."""
    model = model_of(inputs)
    path = model.file("timeline")
    return path if path is not None and model.describes(inputs, ("events",)) else None


def timeline_rows_of(inputs: Inputs) -> str:
    """Return the SQL of every column of the events whose ``_row`` :func:`timeline_of` gives
    (to fetch a few rows by it): the model's kept copy of every event (reports.model_sql.
    USER_COPIES, its rows numbered as the timeline's) beside a kept timeline, else ``events``."""
    from reports.model_sql import USER_COPIES
    from reports.sql import literal

    model = model_of(inputs)
    if _kept_timeline(inputs) is None or model.root is None:
        return "SELECT * FROM events"
    copy = literal(str(model.root / f"{USER_COPIES['events']}.parquet"))
    return f"SELECT * EXCLUDE (_pos), _pos AS _row FROM read_parquet({copy})"  # noqa: S608
