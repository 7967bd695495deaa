"""Running compiled programs in DuckDB."""
