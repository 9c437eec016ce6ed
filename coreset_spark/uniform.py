"""The uniform baseline: every row equally important, no stratification. Pure NumPy.

>>> import numpy as np
>>> importance(None, np.zeros((3, 2))).tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

STRATIFIED = False  # one stratum: a plain uniform sample, as users compare against
PASSES: tuple[str, ...] = ()


def importance(state: Any, x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Equal importance for every row."""
    return np.ones(x.shape[0], dtype=np.float64)
