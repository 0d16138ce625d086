"""Strict JSON of evaluation results: NaN becomes ``null`` (strict JSON has no NaN, and browsers' ``JSON.parse``
rejects it), numpy scalars and arrays become Python numbers and lists, result objects their ``to_dict()``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_float(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` for NaN (and for ``None``)."""
    return None if value is None or math.isnan(value) else float(value)


def jsonable(obj: Any) -> Any:
    """``obj`` with every nested value made strict-JSON serialisable."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if hasattr(obj, "to_dict"):  # Estimate and the other result objects
        return obj.to_dict()
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return json_float(float(obj))
    return obj
