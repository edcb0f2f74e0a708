"""LLM: the public facade, in the style of vLLM and nano-vllm.

with LLM("/path/to/Qwen3-0.6B") as llm:
    outs = llm.generate(["Hello"], SamplingParams(temperature=0.6, max_tokens=32))
    print(outs[0]["text"])
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

from nanovllm.engine.llm_engine import LLMEngine, Prompt
from nanovllm.errors import RequestError, StepError, WorkerError
from nanovllm.sampling_params import SamplingParams

MAX_CONSECUTIVE_STEP_FAILURES = 2  # a step that fails this often in a row fails its requests


class LLM(LLMEngine):
    def generate(
        self,
        prompts: Prompt | Seq[Prompt],
        sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
        use_tqdm: bool = True,
    ) -> list[dict[str, Any]]:
        """Run ``prompts`` to completion; outputs come back in submission order.

        Every prompt is validated before any is queued, so one bad prompt queues nothing. Requests
        already in the engine keep running alongside. On KeyboardInterrupt this call's requests
        are aborted, so the engine is left clean.
        """
        self._check_open()
        prompts = _as_prompt_list(prompts)
        params = _as_params_list(sampling_params, len(prompts))
        validated = [self._validate(p, sp) for p, sp in zip(prompts, params)]
        ids = [self._enqueue(t, sp) for t, sp in validated]
        try:
            self._run_until_done(set(ids), use_tqdm)
        except BaseException:
            for i in ids:
                if i in self.sequences and not self.sequences[i].is_finished:
                    self.abort(i)
            for i in ids:
                self.sequences.pop(i, None)
            raise
        return [self.get_output(i) for i in ids]

    def _run_until_done(self, ids: set[int], use_tqdm: bool) -> None:
        pending = set(ids)
        bar = _progress(len(ids), use_tqdm)
        failures = 0
        try:
            while pending:
                try:
                    record = self.step()
                    failures = 0
                except StepError as e:
                    if isinstance(e.__cause__, WorkerError):
                        raise  # the workers are gone: retrying cannot help, and no request can finish
                    failures += 1
                    if failures < MAX_CONSECUTIVE_STEP_FAILURES:
                        continue
                    for rid in e.request_ids:
                        self.fail_request(rid, str(e.__cause__ or e))
                    failures = 0
                    record = None
                done = {i for i in pending if self.sequences[i].is_finished}
                pending -= done
                if bar is not None:
                    bar.update(len(done))
                    if record is not None and record.timing.total > 0:
                        kind = "prefill" if record.phase.has_prefill else "decode"
                        bar.set_postfix_str(
                            f"{kind} {record.num_tokens / record.timing.total:,.0f} tok/s",
                            refresh=False,
                        )
        finally:
            if bar is not None:
                bar.close()


def _as_prompt_list(prompts) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)):
        if prompts and all(isinstance(t, int) and not isinstance(t, bool) for t in prompts):
            return [list(prompts)]  # one prompt given as token ids
        if not prompts:
            raise RequestError(
                "generate() got no prompts; pass a string, token ids, or a list of them"
            )
        return list(prompts)
    raise RequestError(
        f"prompts must be a str, a list of token ids, or a list of those; got {type(prompts).__name__}"
    )


def _as_params_list(params, n: int) -> list[SamplingParams]:
    if params is None or isinstance(params, SamplingParams):
        return [params or SamplingParams()] * n
    params = list(params)
    if len(params) != n:
        raise RequestError(
            f"got {len(params)} SamplingParams for {n} prompts; pass one, or one per prompt"
        )
    return params


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Generating", dynamic_ncols=True)
