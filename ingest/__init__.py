"""Ingest: sources -> canonical frames -> the local store."""
