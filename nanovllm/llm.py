"""LLM: the public facade, in the style of vLLM and nano-vllm.

with LLM("/path/to/Qwen3-0.6B") as llm:
    outs = llm.generate(["Hello"], SamplingParams(temperature=0.6, max_tokens=32))
    print(outs[0].outputs[0].text)      # vLLM's shape; outs[0]["text"] (nano-vllm's) works too
    outs = llm.chat([{"role": "user", "content": "Hi"}])
    for delta in llm.stream("Hello"):  # text as it is generated (llm.astream: async)
        print(delta, end="")

``LLM(model, kv_events_config={"enable_kv_cache_events": True, "endpoint": "tcp://*:5557"})``
publishes the prefix cache's KV events in vLLM's schema (vLLM's keys; nanovllm/bridge/publisher.py).

nano-vllm's ``is_finished()`` and ``exit()`` are thin aliases of ``not has_unfinished()`` and
``close()``; ``outputs, num_tokens = llm.step()`` unpacks a StepRecord as nano-vllm's step does.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.llm_engine import LLMEngine, Prompt
from nanovllm.engine.observers import ObserverFailure
from nanovllm.engine.requests import params_type_error
from nanovllm.errors import ObserverError, RequestError, StepError, WorkerError
from nanovllm.outputs import RequestOutput
from nanovllm.sampling_params import SamplingParams
from nanovllm.streaming import AsyncTextStream, TextStream

MAX_CONSECUTIVE_STEP_FAILURES = 2  # a step that fails this often in a row fails its requests

Message = dict[str, Any]  # {"role": ..., "content": ...}


class LLM(LLMEngine):
    def __init__(self, model: str, kv_events_config: dict[str, Any] | None = None, **config: Any):
        events = None
        if kv_events_config is not None:  # checked before the model loads; zmq only if asked
            from nanovllm.bridge.publisher import KvEventsConfig

            events = KvEventsConfig.from_dict(kv_events_config)
        super().__init__(model, **config)
        self._dropped_streams: list[int] = []  # requests of streams dropped unfinished
        self.kv_events = None  # the KV-event publisher, when kv_events_config turns it on
        if events is not None and events.active:
            from nanovllm.bridge.publisher import EngineEventPublisher

            try:
                self.kv_events = EngineEventPublisher(self, events)
            except BaseException:
                super().close()
                raise

    def close(self) -> None:
        if getattr(self, "kv_events", None) is not None:
            self.kv_events.close()
        super().close()

    close.__doc__ = LLMEngine.close.__doc__

    def _drop_streams(self) -> None:
        """Abort and forget the requests of streams dropped unfinished (at a safe point: never
        inside a step, where garbage collection may have noted them)."""
        while self._dropped_streams:
            self.forget(self._dropped_streams.pop())

    def release_stream(self, request_id: int, *, now: bool = False) -> None:
        """The streams' hook: a stream of ``request_id`` ended before its request finished, so the
        request is aborted and forgotten: ``now`` (a stream's ``close()``, outside any step), else
        at the next safe point (``step()``, ``step_overlapped()``, ``has_unfinished()``), since
        garbage collection may drop a stream in the middle of a step."""
        self._dropped_streams.append(request_id)
        if now:
            self._drop_streams()

    def step(self) -> StepRecord:
        self._drop_streams()
        return super().step()

    step.__doc__ = LLMEngine.step.__doc__

    def step_overlapped(self) -> StepRecord | None:
        self._drop_streams()
        return super().step_overlapped()

    step_overlapped.__doc__ = LLMEngine.step_overlapped.__doc__

    def has_unfinished(self) -> bool:
        self._drop_streams()
        return super().has_unfinished()

    def generate(
        self,
        prompts: Prompt | Seq[Prompt],
        sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        """Run ``prompts`` to completion; outputs come back in submission order.

        Every prompt is validated before any is queued, so one bad prompt queues nothing. Requests
        already in the engine keep running alongside. Without ``sampling_params``, the
        checkpoint's defaults (``get_default_sampling_params()``). A step that fails in the
        engine's own code is retried (``try_step``). A step observer that raises (the caller's
        code, never swallowed) costs no output: this call's requests run to their end, every
        observer seeing every step, and then ``ObserverError`` is raised with the outputs in
        ``.outputs`` and the observer's first exception as its ``__cause__``. Any other exception
        (KeyboardInterrupt, a signal handler's) propagates at once, and this call's requests are
        aborted, so the engine is left clean.
        """
        self._check_open()
        prompts = _as_prompt_list(prompts)
        if sampling_params is None:  # vLLM's: the checkpoint's generation_config defaults
            sampling_params = self.get_default_sampling_params()
        params = _as_params_list(sampling_params, len(prompts))
        validated = [self._validate(p, sp) for p, sp in zip(prompts, params)]
        ids = [self._enqueue(*v) for v in validated]
        observed: list[ObserverFailure] = []
        try:
            self._run_until_done(set(ids), use_tqdm, observed)
        except BaseException:
            for i in ids:
                self.forget(i)
            raise
        outputs = [self.get_output(i) for i in ids]
        if observed:
            raise ObserverError.after(observed, outputs) from observed[0].error
        return outputs

    def chat(
        self,
        messages: list[Message] | list[list[Message]],
        sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
        use_tqdm: bool = True,
        *,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """vLLM's ``chat``: render each conversation with the tokenizer's chat template (or
        ``chat_template``), then ``generate``. ``messages`` is one conversation (a list of
        ``{"role", "content"}`` dicts) or a list of them; one output per conversation."""
        conversations = _as_conversations(messages)
        prompts = [
            {
                "prompt": self._render_chat(
                    conv,
                    chat_template,
                    add_generation_prompt,
                    continue_final_message,
                    chat_template_kwargs or {},
                )
            }
            for conv in conversations
        ]
        return self.generate(prompts, sampling_params, use_tqdm)

    def _render_chat(self, conv, template, add_generation_prompt, continue_final, kwargs) -> str:
        if template is None and not getattr(self.tokenizer, "chat_template", None):
            raise RequestError(
                "the tokenizer has no chat template; pass chat_template=... (a Jinja string)"
            )
        try:
            return self.tokenizer.apply_chat_template(
                conv,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final,
                chat_template=template,
                **kwargs,
            )
        except Exception as e:
            raise RequestError(f"cannot render the conversation with the chat template: {e}") from e

    def get_tokenizer(self):
        """The Hugging Face tokenizer the engine encodes prompts and decodes outputs with."""
        return self.tokenizer

    # ---- streaming -------------------------------------------------------------------------------
    def stream(self, prompt: Prompt, sampling_params: SamplingParams | None = None) -> TextStream:
        """Text deltas of one request as it is generated (see nanovllm/streaming.py); each
        ``next()`` without new text runs one engine step for every request in the engine."""
        return TextStream(self, self._add_streamed(prompt, sampling_params))

    def astream(
        self, prompt: Prompt, sampling_params: SamplingParams | None = None
    ) -> AsyncTextStream:
        """``stream`` for ``async for``: yields to the event loop between steps (notebooks)."""
        return AsyncTextStream(self, self._add_streamed(prompt, sampling_params))

    def _add_streamed(self, prompt: Prompt, params: SamplingParams | None) -> int:
        if params is not None and getattr(params, "n", 1) > 1:
            raise RequestError(
                f"a stream carries one sample, got n={params.n}; pass n=1 (generate returns n)"
            )
        return self.add_request(prompt, params)

    # ---- nano-vllm's names -----------------------------------------------------------------------
    def is_finished(self) -> bool:
        """nano-vllm's name: no request is waiting or running (``not has_unfinished()``)."""
        return not self.has_unfinished()

    def exit(self) -> None:
        """nano-vllm's name for ``close()``."""
        self.close()

    # ---- the step loop ---------------------------------------------------------------------------
    def try_step(
        self, failures: int = 0, observed: list[ObserverFailure] | None = None
    ) -> tuple[StepRecord | None, int]:
        """One step (overlapped with the next when ``config.overlap_scheduling``), and the
        consecutive failures so far (``failures``: the count the last call returned). A step that
        failed in the engine's own code (``StepError``; the caller's exceptions pass through) is
        retried by the next call; one that fails ``MAX_CONSECUTIVE_STEP_FAILURES`` times in a row
        fails its requests (the others go on). A dead worker ends it all: no request can finish.
        With an ``observed`` list, an observer's exception is appended to it, not raised
        (engine/observers.py). ``generate`` and the streams step through this."""
        try:
            with self.observers.deferred(observed):
                return self.step_overlapped(), 0
        except StepError as e:
            if isinstance(e.__cause__, WorkerError):
                raise
            failures += 1
            if failures < MAX_CONSECUTIVE_STEP_FAILURES:
                return None, failures
            for rid in e.request_ids:
                self.fail_request(rid, str(e.__cause__ or e))
            return None, 0

    def _run_until_done(
        self, ids: set[int], use_tqdm: bool, observed: list[ObserverFailure]
    ) -> None:
        pending = set(ids)
        bar = _progress(len(ids), use_tqdm)
        failures = 0
        try:
            while pending:
                record, failures = self.try_step(failures, observed)
                done = {i for i in pending if self.is_request_finished(i)}
                pending -= done
                if bar is not None:
                    bar.update(len(done))
                    if record is not None and record.timing.total > 0:
                        kind = "prefill" if record.phase.has_prefill else "decode"
                        bar.set_postfix_str(
                            f"{kind} {record.num_tokens / record.timing.total:,.0f} tok/s",
                            refresh=False,
                        )
            with self.observers.deferred(observed):
                self.drain()  # leave no step in flight (requests added elsewhere may be in it)
        finally:
            if bar is not None:
                bar.close()


def _as_prompt_list(prompts) -> list[Prompt]:
    if isinstance(prompts, (str, dict)):
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
        f"prompts must be a str, a list of token ids, a prompt dict, or a list of those; "
        f"got {type(prompts).__name__}"
    )


def _as_params_list(params, n: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * n
    if not isinstance(params, (list, tuple)):
        expected = "sampling_params must be a SamplingParams or a list of them (one per prompt)"
        raise params_type_error(params, expected)
    params = list(params)
    if len(params) != n:
        raise RequestError(
            f"got {len(params)} SamplingParams for {n} prompts; pass one, or one per prompt"
        )
    return params


def _as_conversations(messages) -> list[list[Message]]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise RequestError(
            "chat() takes a conversation (a list of message dicts) or a list of them"
        )
    conversations = [messages] if isinstance(messages[0], dict) else list(messages)
    for conv in conversations:
        if not isinstance(conv, (list, tuple)) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in conv
        ):
            raise RequestError(
                "each message must be a dict with 'role' and 'content', e.g. "
                "{'role': 'user', 'content': 'Hello'}"
            )
    return [list(c) for c in conversations]


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Generating", dynamic_ncols=True)
