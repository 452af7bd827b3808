"""A saved SCIM ListResponse (`GET /Users`, `GET /Groups`) -> ``scim_resources``.

Accepts one ListResponse object or a JSON array of them (paged dumps). The snapshot time is
``Options.captured_at`` when given, else the file's modification time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

import orjson
import pandas as pd

from ingest.errors import BadInput
from ingest.formats import FileFormat, Frames, Options, Source, register
from ingest.scim import LIST_RESPONSE, resources_frame

REMEDY: Final = "expected a SCIM ListResponse with a `Resources` list; nothing was stored"
_SNIFF_RE: Final = re.compile(
    r'^\s*\[?\s*\{.*?"schemas"\s*:\s*\[[^\]]*"' + re.escape(LIST_RESPONSE) + '"',
    re.DOTALL,
)


def sniff(source: Source) -> bool:
    """True when the file starts like a ListResponse object (or an array of them)."""
    head = source.head()
    if not _SNIFF_RE.match(head):
        return False
    # A JSON Lines file whose records embed ListResponses is not a ListResponse: its first
    # line is a complete object without `Resources` at the top level.
    first = head.lstrip().split("\n", 1)[0]
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return True
    return isinstance(obj, dict | list) and (
        isinstance(obj, list) or "Resources" in obj or "totalResults" in obj
    )


def _pages(doc: Any, name: str) -> list[dict[str, Any]]:
    pages = doc if isinstance(doc, list) else [doc]
    for i, page in enumerate(pages, start=1):
        if not isinstance(page, dict) or LIST_RESPONSE not in (page.get("schemas") or []):
            raise BadInput(f"{name}:record {i}", "not a SCIM ListResponse", REMEDY)
        res = page.get("Resources", [])
        if not isinstance(res, list):
            raise BadInput(f"{name}:record {i}", "`Resources` is not a list", REMEDY)
    return pages


def parse(source: Source, options: Options) -> Iterator[Frames]:
    """Yield one ``scim_resources`` frame of the users and groups in the file."""
    try:
        doc = orjson.loads(source.text())
    except orjson.JSONDecodeError as exc:
        line = source.text().count("\n", 0, exc.pos) + 1 if exc.pos else 1
        raise BadInput(f"{source.name}:{line}", f"not valid JSON ({exc.msg})", REMEDY) from None
    captured_at = options.captured_at
    if captured_at is None:
        captured_at = pd.Timestamp(source.path.stat().st_mtime, unit="s", tz="UTC")
    elif captured_at.tzinfo is None:
        captured_at = captured_at.tz_localize("UTC")
    resources = [r for page in _pages(doc, source.name) for r in page.get("Resources", []) or []]
    bad = next((i for i, r in enumerate(resources, 1) if not isinstance(r, dict)), None)
    if bad is not None:
        raise BadInput(f"{source.name}:resource {bad}", "a resource is not an object", REMEDY)
    yield {"scim_resources": resources_frame(resources, captured_at)}


FORMAT = register(
    FileFormat(
        kind="scim_list",
        description="SCIM ListResponse JSON of /Users or /Groups (a state snapshot)",
        sniff=sniff,
        parse=parse,
        priority=30,
        tables=("scim_resources",),
    )
)
