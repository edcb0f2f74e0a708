"""Streams: one request's text as it is generated, while every other request keeps batching.

::

    for delta in llm.stream("Once upon a time", params):        # plain Python
        print(delta, end="")
    async for delta in llm.astream("Once upon a time", params):  # a notebook cell (top-level await)
        print(delta, end="")

Each ``next()`` that finds no new text runs one engine step, which advances every request in the
engine (other streams, ``add_request``s, a workbench), not only this one. The async form awaits
``asyncio.sleep(0)`` after each step, so the event loop (ipywidgets' comms, the workbench's views)
runs between steps.

The deltas are slices of one growing text (``detokenizer.visible_text``): a UTF-8 character split
over tokens, and text where a stop string may still begin, are held back until they are final;
so the deltas joined equal the output's ``text``. ``stream.output`` is the ``RequestOutput`` once
the stream is exhausted.

A step observer that raises while the stream steps (the caller's code, never swallowed) costs
no text: the stream goes on to the end of its request, every delta delivered, and then raises
``ObserverError`` (nanovllm/errors.py) in place of ``StopIteration``, with ``.outputs ==
[stream.output]`` and the observer's first exception as its ``__cause__``.

Closing a stream early aborts its request: ``close()`` at once; a stream dropped unfinished
(``break``, then garbage collection; an exception in the loop) is only noted, and ``LLM`` aborts it
at its next ``step()`` or ``has_unfinished()``. Garbage collection can run in the middle of a step,
where aborting would change the scheduler's queues under it.

A stream uses ``LLM``'s public API only (``StreamSource``: ``try_step`` and ``release_stream`` are
the hooks it steps and ends by); this module never imports ``llm.py``, which imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from nanovllm.engine.core.detokenizer import visible_text
from nanovllm.errors import ObserverError
from nanovllm.outputs import RequestOutput


class StreamSource(Protocol):
    """What a stream needs of ``LLM``."""

    tokenizer: Any

    def request_sequences(self, request_id: int) -> list: ...

    def get_output(self, request_id: int) -> RequestOutput: ...

    def try_step(self, failures: int = 0, observed: list | None = None) -> tuple[object, int]: ...

    def release_stream(self, request_id: int, *, now: bool = False) -> None: ...


class _StreamBase:
    def __init__(self, llm: StreamSource, request_id: int):
        self.llm = llm
        self.request_id = request_id
        self.output: RequestOutput | None = None
        [self._seq] = llm.request_sequences(request_id)
        self._sent = 0
        self._failures = 0
        self._observed: list = []  # (step, exception) of observers that raised in our steps

    def _poll(self) -> tuple[str, bool]:
        """(new text, whether the request is done)."""
        text = visible_text(self._seq, self.llm.tokenizer)
        delta, self._sent = text[self._sent :], len(text)
        if self._seq.is_finished:
            self.output = self.llm.get_output(self.request_id)
            return delta, True
        return delta, False

    def _step(self) -> None:
        _, self._failures = self.llm.try_step(self._failures, self._observed)

    def _end(self) -> None:
        """The request is done and every delta delivered: raise what observers raised, if any."""
        if self._observed:
            outputs = [self.output]
            raise ObserverError.after(self._observed, outputs) from self._observed[0].error

    def _cleanup(self, now: bool = False) -> None:
        """Have ``LLM`` abort an unfinished request: at a safe point (this may run inside a step),
        or ``now``."""
        if self.output is None:
            self.llm.release_stream(self.request_id, now=now)

    def __del__(self) -> None:  # a stream dropped unread (or half read) leaves nothing behind
        self._cleanup()


class TextStream(_StreamBase):
    """An iterator of text deltas for one request (see the module docstring)."""

    def __init__(self, llm: StreamSource, request_id: int):
        super().__init__(llm, request_id)
        self._gen = self._run()

    def _run(self) -> Iterator[str]:
        try:
            while True:
                delta, done = self._poll()
                if delta:
                    yield delta
                if done:
                    self._end()
                    return
                self._step()
        finally:
            self._cleanup()

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        """Stop streaming; an unfinished request is aborted and dropped, now."""
        self._gen.close()
        self._cleanup(now=True)


class AsyncTextStream(_StreamBase):
    """An async iterator of text deltas for one request; yields to the event loop each step."""

    def __init__(self, llm: StreamSource, request_id: int):
        super().__init__(llm, request_id)
        self._gen = self._run()

    async def _run(self) -> AsyncIterator[str]:
        try:
            while True:
                delta, done = self._poll()
                if delta:
                    yield delta
                if done:
                    self._end()
                    return
                self._step()
                await asyncio.sleep(0)
        finally:
            self._cleanup()

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop streaming; an unfinished request is aborted and dropped, now."""
        await self._gen.aclose()
        self._cleanup(now=True)
