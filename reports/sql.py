"""SQL over in-memory frames: one coding of a rule serves test inputs and the store alike.

A report whose heavy step is an aggregate writes it once as DuckDB SQL and runs it here over the
frames it was given (from a store version through reports.query, or inline in a test): DuckDB
reads the frames' Arrow buffers without copying them, and pandas only sees the small result.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa


def run(sql: str, **frames: pd.DataFrame) -> pd.DataFrame:
    """Return the result of ``sql`` over ``frames`` (each a table named by its keyword).

    Text comes back as pandas' ``str``, times as UTC ``datetime64[us, UTC]``.
    """
    con = duckdb.connect(config={"threads": 2})
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, frame in frames.items():
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        result = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    out = result.to_pandas()
    for field in result.schema:
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            out[field.name] = out[field.name].astype("str")
        elif pa.types.is_timestamp(field.type):
            out[field.name] = pd.to_datetime(out[field.name], utc=True).astype(
                "datetime64[us, UTC]"
            )
    return out
