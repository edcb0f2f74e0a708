"""What crosses to the front end is JSON: no NaN or infinity.

Plotly sends 1-D numeric numpy arrays as binary buffers, but a 2-D array (a heatmap's ``z``) as
nested lists through JSON, where NaN is not allowed (the kernel then warns "Out of range float
values are not JSON compliant" and rewrites the message). Heatmaps mark empty cells with ``None``.
"""

from __future__ import annotations

import numpy as np


def grid(values: np.ndarray) -> list[list]:
    """A 2-D float array as nested lists, with ``None`` where it is NaN (or infinite)."""
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()
