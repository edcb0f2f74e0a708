"""Host-to-device copies that never wait for the device.

A copy from ordinary (pageable) host memory may synchronize with the stream before it starts, so a
step launched behind a running one would wait for it: with overlap scheduling (engine/step_loop.py)
that would undo the overlap. Staging the data in pinned memory first makes the copy asynchronous;
PyTorch's caching host allocator keeps the pinned block until the copy has run.
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(data: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """``data`` on ``device``, copied asynchronously (through pinned memory on CUDA)."""
    t = torch.from_numpy(data) if isinstance(data, np.ndarray) else data
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
