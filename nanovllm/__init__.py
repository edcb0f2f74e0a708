"""nanovllm: a compact, readable, fast LLM inference engine (nano-vllm design)."""

from nanovllm.engine_args import EngineArgs
from nanovllm.errors import (
    ConfigError,
    EngineClosedError,
    KVCacheTooSmallError,
    ModelLoadError,
    ModelNotFoundError,
    NanoVLLMError,
    ObserverError,
    RequestError,
    StepError,
    UnknownRequestError,
    UnsupportedModelError,
    WorkerError,
)
from nanovllm.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from nanovllm.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "SamplingParams",
    "EngineArgs",
    "RequestOutput",
    "CompletionOutput",
    "Logprob",
    "RequestMetrics",
    "NanoVLLMError",
    "ConfigError",
    "KVCacheTooSmallError",
    "ModelLoadError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "RequestError",
    "UnknownRequestError",
    "EngineClosedError",
    "StepError",
    "ObserverError",
    "WorkerError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # LLM is imported on first use, so importing a light part of the package (nanovllm.engine.core,
    # nanovllm.errors) does not pull in the engine's heavier imports (numpy, the runner).
    if name == "LLM":
        from nanovllm.llm import LLM

        return LLM
    raise AttributeError(f"module 'nanovllm' has no attribute {name!r}")
