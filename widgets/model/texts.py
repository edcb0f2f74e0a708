"""SequenceText: the text of a span of a sequence's tokens, for hovers and the requests panel.

Snapshots carry no token ids (copying them would cost O(tokens) per step), so the views ask here,
for the few spans they show. The tokens come through the engine's public API
(``llm.request_sequences(seq_id)``); a sequence only ever appends tokens, so the span
``[start, end)`` of a past snapshot is still the same text later. Once a finished request's output
is collected its tokens are gone: ``text`` returns None. Decoded spans are cached (LRU), so a
redraw decodes only what changed. A token still being sampled by a step in flight (a placeholder,
overlap scheduling) is shown as "…" and its span is not cached. A view is handed this as a plain
function (``__call__`` is ``text``); another data source gives its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from nanovllm.errors import UnknownRequestError

MAX_CACHED = 4096  # decoded spans kept


class SequenceText:
    """``text(seq_id, start, end)``: the text source every view's context carries."""

    def __init__(self, engine: Callable[[], object]):
        self._engine = engine  # the workbench's current engine (it changes on rebuild)
        self._cache: OrderedDict[tuple[int, int, int], str | None] = OrderedDict()

    def clear(self) -> None:
        """Forget every decoded span (a new engine numbers its sequences from 0 again)."""
        self._cache.clear()

    def tokens(self, seq_id: int, start: int, end: int) -> list[int] | None:
        """Token ids ``[start, end)`` of sequence ``seq_id``; None when it is not known."""
        llm = self._engine()
        try:
            seqs = llm.request_sequences(seq_id)
        except UnknownRequestError:
            return None
        seq = next((s for s in seqs if s.seq_id == seq_id), None)
        return None if seq is None else list(seq.token_ids[start:end])

    def text(self, seq_id: int, start: int, end: int) -> str | None:
        """The decoded text of tokens ``[start, end)``, or None when they are not known."""
        key = (seq_id, start, end)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ids = self.tokens(seq_id, start, end)
        if ids and ids[-1] < 0:  # a placeholder (pending: its step is in flight); only the last
            return self._engine().tokenizer.decode(ids[:-1]) + "…"
        text = None if ids is None else self._engine().tokenizer.decode(ids)
        if text is not None:  # an unknown sequence may not be unknown for long: ask again
            self._cache[key] = text
            if len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return text

    __call__ = text
