"""Fuzzing every registered file format: arbitrary input parses or raises BadInput, nothing else.

For each :class:`ingest.formats.FileFormat` in the registry, hypothesis feeds raw bytes, JSON-ish
documents built from the keys the parsers look for (then possibly cut, spliced or re-encoded),
CSV built from the headers they match, and log-like lines. Each example goes through what
``ingest file`` does with it: ``Source`` decoding, ``detect`` (or the forced kind), ``parse``, and
the frames through ``schema.conform`` and the store's Arrow conversion. The only exception allowed
is ``BadInput``; a hang is caught by the per-example deadline and pytest-timeout.

Budget: ``FUZZ_EXAMPLES`` per format (150 in CI, derandomised so CI is reproducible);
``PROVLENS_STRESS=1`` runs 3000 per format with fresh randomness.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import schema
from ingest.errors import BadInput
from ingest.formats import Options, Source, detect, load_all
from ingest.formats.portal_csv import EVENT_ALIASES, PROP_ALIASES, STEP_ALIASES
from ingest.store import to_arrow

STRESS = os.environ.get("PROVLENS_STRESS") == "1"
# The larger counts need longer than the suite-wide 300 s per test.
pytestmark = pytest.mark.timeout(7200 if STRESS else 300)
FUZZ_EXAMPLES = 3000 if STRESS else 150
KINDS = sorted(load_all())

SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=not STRESS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Keys the parsers look for, in the spellings the sources use.
KEYS = [
    "id", "Id", "activityDateTime", "ActivityDateTime", "time", "TimeGenerated", "value",
    "records", "tables", "columns", "rows", "name", "category", "properties", "Resources",
    "schemas", "totalResults", "changeId", "cycleId", "jobId", "tenantId", "provisioningAction",
    "action", "provisioningStatusInfo", "statusInfo", "status", "errorInformation", "errorCode",
    "provisioningSteps", "ProvisioningSteps", "provisioningStepType", "details", "description",
    "modifiedProperties", "oldValue", "newValue", "displayName", "servicePrincipal",
    "sourceIdentity", "targetIdentity", "identityType", "initiatedBy", "initiatorType",
    "durationInMilliseconds", "durationMs", "resultType", "method", "path", "request",
    "response", "request_id", "latency_ms", "client", "Operations", "op", "userName", "active",
    "externalId", "meta", "created", "lastModified", "schedule", "interval", "lastExecution",
    "timeBegan", "quarantine", "steadyStateFirstAchievedTime", "principalId", "principalType",
    "appRoleId", "createdDateTime", "@odata.type", "@odata.context", "@odata.nextLink",
    "userPrincipalName", "templateId", "synchronizationJobSettings", "code",
]  # fmt: skip
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "",
            "2026-11-20T10:15:03.1234567Z",
            "2026-11-20T10:15:03+05:30",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "99999-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "PT40M",
            "P1DT2H",
            "Create",
            "stagedDelete",
            "Failure",
            "skipped",
            "Import",
            "User",
            "Group",
            "#microsoft.graph.group",
            "urn:ietf:params:scim:api:messages:2.0:ListResponse",
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "00000000-0000-0000-0000-000000000000",
            "PATCH",
            "/api/v2/scim/v2/Users/2819c223",
            "Replace",
            "False",
            "ProvisioningLogs",
            '{"a": [1, 2]}',
            "[]",
            "=cmd|' /C calc'!A0",
            "\x00",
            "\u2028",
        ]
    ),
    st.text(max_size=20),
)
JSONISH = st.recursive(
    ATOMS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=40,
)


def _dumps(doc: object, indent: int | None) -> bytes:
    # json, not orjson: integers beyond 64 bits must reach the parsers too.
    return json.dumps(doc, indent=indent, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    """A JSON document (or JSON Lines) in a wrapper a format expects, maybe damaged."""
    body = draw(JSONISH)
    wrapper = draw(st.sampled_from(["bare", "value", "records", "list", "lines", "schemas"]))
    if wrapper == "value":
        doc: object = {"@odata.context": "x", "value": body if isinstance(body, list) else [body]}
    elif wrapper == "records":
        doc = {"records": body if isinstance(body, list) else [body]}
    elif wrapper == "list":
        doc = body if isinstance(body, list) else [body]
    elif wrapper == "schemas":
        doc = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "Resources": body,
        }
    else:
        doc = body
    if wrapper == "lines":
        items = body if isinstance(body, list) else [body]
        data = b"\n".join(_dumps(i, None) for i in items) + b"\n"
    else:
        data = _dumps(doc, 2 if draw(st.booleans()) else None)
    return draw(_damage(data))


@st.composite
def _damage(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["none", "none", "cut", "splice", "utf16", "bom", "nul", "concat"]))
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "splice" and data:
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if how == "utf16":
        try:
            return b"\xff\xfe" + data.decode("utf-8").encode("utf-16-le")
        except UnicodeDecodeError:
            return data
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "nul" and data:
        at = draw(st.integers(0, len(data)))
        return data[:at] + b"\x00" + data[at:]
    if how == "concat":
        return data + b"\n" + data
    return data


CSV_HEADERS = sorted(
    {
        a
        for aliases in (EVENT_ALIASES, STEP_ALIASES, PROP_ALIASES)
        for v in aliases.values()
        for a in v
    }
    | {"Date", "Change ID", "Action", "Status", "TimeGenerated", "ProvisioningSteps", "Id"}
)
CELL = st.one_of(
    st.sampled_from(["", "2026-11-20T10:15:03Z", "11/20/2026 10:15 AM", "Create", "x,y", '"q"']),
    st.text(alphabet=string.printable, max_size=12),
)


@st.composite
def csv_documents(draw: st.DrawFn) -> bytes:
    """A CSV with headers the CSV formats match and rows of any width."""
    headers = draw(st.lists(st.sampled_from(CSV_HEADERS), min_size=1, max_size=8))
    rows = draw(
        st.lists(st.lists(CELL, min_size=0, max_size=len(headers) + 2), min_size=0, max_size=5)
    )

    def line(cells: list[str]) -> str:
        return ",".join(
            '"' + c.replace('"', '""') + '"' if draw(st.booleans()) else c for c in cells
        )

    text = "\n".join([line(headers), *(line(r) for r in rows)]) + "\n"
    return draw(_damage(text.encode("utf-8")))


@st.composite
def log_lines(draw: st.DrawFn) -> bytes:
    """Access-log-like lines, some well formed, some not."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        client = draw(st.sampled_from(["203.0.113.7", "::1", "-", "a b"]))
        when = draw(
            st.sampled_from(
                [
                    "20/Nov/2026:10:15:03 +0000",
                    "31/Feb/2026:10:15:03 +0000",
                    "20/Nov/0000:10:15:03 +0000",
                    "junk",
                ]
            )
        )
        req = draw(
            st.sampled_from(
                ["GET /api/v2/scim/v2/Users HTTP/1.1", "PATCH /scim/Users/1 HTTP/1.1", "-", ""]
            )
        )
        status = draw(st.sampled_from(["200", "404", "999", "abc"]))
        tail = draw(st.sampled_from(["", ' "-" "Entra"', ' "-" "Entra" 0.041', " 41000"]))
        out.append(f'{client} - - [{when}] "{req}" {status} 512{tail}')
    return draw(_damage(("\n".join(out) + "\n").encode()))


INPUTS = st.one_of(
    st.binary(max_size=1024),
    json_documents(),
    csv_documents(),
    log_lines(),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="provlens-fuzz-") as d:
        yield Path(d)


def run_format(path: Path, kind: str | None) -> int:
    """Do what ``ingest file`` does short of committing; return rows produced."""
    fmts = load_all()
    src = Source(path)
    fmt = fmts[kind] if kind else detect(src)
    options = Options(service_principal_id="sp-1", group_id="g-1")
    rows = 0
    for frames in fmt.parse(src, options):
        for table, df in frames.items():
            if df is None or df.empty:
                continue
            conformed = schema.conform(table, df)
            to_arrow(table, conformed)
            rows += len(conformed)
    return rows


def _check(path: Path, data: bytes, kind: str | None) -> None:
    path.write_bytes(data)
    try:
        run_format(path, kind)
    except BadInput as exc:
        text = str(exc)
        assert path.name in text, text  # names the file
        assert "\n" not in " ".join(text.split()), text


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_forced_kind(kind: str, scratch: Path) -> None:
    path = scratch / f"fuzz-{kind}.dat"

    @SETTINGS
    @given(data=INPUTS)
    def inner(data: bytes) -> None:
        _check(path, data, kind)

    inner()


def test_fuzz_detected(scratch: Path) -> None:
    path = scratch / "fuzz-detect.dat"

    @SETTINGS
    @given(data=INPUTS)
    def inner(data: bytes) -> None:
        _check(path, data, None)

    inner()


def test_fuzz_budget_covers_every_format() -> None:
    assert len(KINDS) >= 11, KINDS  # a new format is fuzzed without touching this file
    assert FUZZ_EXAMPLES >= 150
