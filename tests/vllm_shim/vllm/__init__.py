"""A name-only ``vllm`` for tests: vLLM's example scripts import these names and run on nanovllm
unchanged (tests/test_compat.py puts this folder first on ``sys.path``). Nothing here implements
anything; every name is nanovllm's own."""

from nanovllm import (
    LLM,
    CompletionOutput,
    EngineArgs,
    Logprob,
    RequestOutput,
    SamplingParams,
)

__all__ = ["LLM", "SamplingParams", "EngineArgs", "RequestOutput", "CompletionOutput", "Logprob"]
