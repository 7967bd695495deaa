"""Sizes as users write them: '400MB', '1.5GiB', '123456' (bytes)."""
from __future__ import annotations

import re

from onnx2sql.errors import UsageError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """Bytes, or UsageError naming `what` (e.g. '--memory-limit')."""
    match = _SIZE.fullmatch(text)
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(f"{what} {text!r} is not a size such as 400MB or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
