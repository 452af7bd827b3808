"""One module per CLI command (see provlens.cli)."""
