"""`provlens store info`."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments."""
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def run(args: argparse.Namespace, ctx) -> int:
    """Print the store summary."""
    info = ctx.store().info()
    if args.format == "json":
        import orjson

        print(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(info["path"])
    if not info["version"]:
        print("empty store: nothing ingested yet (try `provlens demo` or `provlens ingest file`)")
        return 0
    print(f"version {info['version']}")
    print("rows:")
    width = max(len(t) for t in info["rows"])
    for table, n in info["rows"].items():
        print(f"  {table:<{width}}  {n:>10,}")
    if info["time_range"]:
        print("time range (UTC):")
        for table, (lo, hi) in info["time_range"].items():
            print(f"  {table:<{width}}  {lo} .. {hi}")
    print("last ingest per source (UTC):")
    for source, entry in sorted(info["last_ingest"].items()):
        added = ", ".join(f"{n} {t}" for t, n in entry.get("added", {}).items()) or "no rows"
        detail = f" ({entry['detail']})" if entry.get("detail") else ""
        print(f"  {source:<{width}}  {entry['at']}{detail}: {added}")
    if info["watermarks"]:
        print("watermarks (UTC):")
        for key, value in sorted(info["watermarks"].items()):
            print(f"  {key}  {value}")
    print(f"size on disk: {_size(info['bytes'])}")
    return 0
