"""A hypothesis strategy for the JSON Schema subset Graph's generated schemas use.

hypothesis-jsonschema does not work with current hypothesis releases, so this covers what
reference/schema/*.schema.json contains: $ref, anyOf, enum, type (single or list), properties,
additionalProperties, items, minimum/maximum and the date-time format. Optional properties are
drawn or left out, so records of every shape appear.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_TIME = st.builds(
    lambda y, mo, d, h, mi, s, frac, tz: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "") + tz
    ),
    st.integers(1990, 2099),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", "1", "123", "3538931", "123456789"]),
    st.sampled_from(["Z", "+02:00", "-05:30"]),
)
_TEXT = st.text(max_size=12)
_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _TEXT)


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy:
    """Return a strategy of JSON values valid against ``schema``."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(root["definitions"][name], root))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    types = schema.get("type", "object")
    if isinstance(types, list):
        return st.one_of([from_schema({**schema, "type": t}, root) for t in types])
    if types == "null":
        return st.none()
    if types == "boolean":
        return st.booleans()
    if types == "integer":
        return st.integers(
            max(schema.get("minimum", -(2**31)), -(2**31)),
            min(schema.get("maximum", 2**31 - 1), 2**31 - 1),
        )
    if types == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if types == "string":
        return _TIME if schema.get("format") == "date-time" else _TEXT
    if types == "array":
        return st.lists(from_schema(schema.get("items", {}), root), max_size=4)
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", False)

    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if draw(st.booleans()):
                out[key] = draw(from_schema(sub, root))
        if extra:
            extra_values = from_schema(extra, root) if isinstance(extra, dict) else _JSON_SCALARS
            for key in draw(st.lists(_TEXT, max_size=3)):
                out.setdefault(key, draw(extra_values))
        return out

    return objects()
