"""Executor: what the engine runs a step on. One interface, two implementations:

    ModelRunner   (runner/model_runner.py)     tensor_parallel_size == 1, in this process
    WorkerGroup   (parallel/worker_group.py)   one spawned process per rank

The engine knows only this interface: how many KV blocks fit, run one step (or launch it and
collect its tokens later: overlap scheduling), close. The engine picks the implementation
(``llm_engine.make_executor``), above both runner and parallel, so runner never imports parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nanovllm.engine.core.batch import SamplerOutput

if TYPE_CHECKING:
    import numpy as np

    from nanovllm.engine.runner.inputs import StepInputs


@dataclass
class RunTiming:
    """Seconds of one ``run``; on GPU ``forward`` is device time from CUDA events."""

    prepare: float = 0.0
    forward: float = 0.0
    sample: float = 0.0
    # MoE models only: [sparse layers, experts] int64, tokens routed to each expert this step
    expert_tokens: np.ndarray | None = None


class Launched(Protocol):
    """A step handed to the executor and not yet collected."""

    # False when collecting it would wait for any step launched after it (it copies to the host
    # with blocking reads): then the engine collects it before launching the next.
    overlappable: bool


class Executor(Protocol):
    num_kvcache_blocks: int  # fixed once built: the minimum over ranks

    def run(self, inputs: StepInputs) -> tuple[SamplerOutput, RunTiming]:
        """Forward one step and sample its sample rows."""
        ...

    def launch(self, inputs: StepInputs) -> Launched:
        """Queue one step and return without waiting for its tokens (where the device allows)."""
        ...

    def collect(self, launched: Launched) -> tuple[SamplerOutput, RunTiming]:
        """Wait for a launched step's tokens."""
        ...

    def close(self) -> None:
        """Free processes, device memory and shared memory; idempotent."""
        ...
