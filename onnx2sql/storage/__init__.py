"""Moving arrays in and out of DuckDB in the chunked layout, in bulk through Arrow."""
