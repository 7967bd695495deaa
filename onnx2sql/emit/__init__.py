"""Rendering SQL: identifiers, types, templates. The only place that quotes names."""
