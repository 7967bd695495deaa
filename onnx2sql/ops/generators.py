"""generators ops (being written)."""
