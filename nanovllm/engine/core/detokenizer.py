"""Token ids -> completion text, incrementally; and the stop-string check built on it.

Pure Python: the tokenizer is any object with ``decode(ids, skip_special_tokens=...)`` (a Hugging
Face tokenizer), handed in by the engine. Nothing here imports it.

Incremental detokenization decodes a small window of tokens, not the whole completion::

    token_ids:  p p p p | g0 g1 ... g(j-1) | gj ... g(k-1) | gk ...
                                           ^prefix_offset  ^read_offset   ^end
    new text = decode(prefix..end)[len(decode(prefix..read)):]

The window starts one emission back, so a tokenizer that spaces or merges across tokens (a
WordPiece decoder's joins, SentencePiece's word starts) gives the text a full decode gives. The
first window starts ``PROMPT_CONTEXT`` tokens back in the prompt, as vLLM's does: the text is the
suffix that the completion adds to the decode of prompt + completion, so ``prompt + text`` reads
right. With a word-level tokenizer the completion of "one two three four" is " five six" (its
leading space is the join between the prompt's last word and the first generated one), where a
decode of the completion alone gives "five six". (A prompt whose tail decodes to a broken
character starts the window at the completion instead.) New text is taken only when the window's
decode does not end in U+FFFD: a UTF-8 character split over byte tokens is held back until a later
token completes it. ``finish()`` takes everything that is left, held-back bytes too.

Which tokens make text (``text_end``): all generated ones, except the EOS or stop token that ended
the sequence (vLLM leaves it out too), unless ``include_stop_str_in_output``, and except a pending
last token (overlap scheduling: a placeholder for a token still being sampled, not a token id).

A sequence gets an ``IncrementalDetokenizer`` (``seq.detokenizer``) only when something needs its
text while it runs: stop strings (``StopChecker``, called by the scheduler) or a stream. Otherwise
the text is made once, when the output is built (``final_text``).
"""

from __future__ import annotations

from nanovllm.engine.core.sequence import FinishReason, Sequence

REPLACEMENT = "\ufffd"
PROMPT_CONTEXT = 5  # prompt tokens the first window starts back (vLLM's initial offset)


class IncrementalDetokenizer:
    """The completion text of one sequence so far. ``text`` only grows; ``stop_at`` (set by the
    stop checker) is where ``output_text`` ends."""

    def __init__(self, tokenizer, num_prompt_tokens: int, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.prefix_offset = self.read_offset = num_prompt_tokens
        self._in_prompt = num_prompt_tokens > 0  # the first window still to be moved back
        self.text = ""
        self.stop_at: int | None = None
        self.finished = False
        self._prefix_key: tuple[int, int] | None = None
        self._prefix_text = ""

    @property
    def output_text(self) -> str:
        return self.text if self.stop_at is None else self.text[: self.stop_at]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _prefix(self, token_ids: list[int]) -> str:
        if self._in_prompt:  # the first call: start the window in the prompt's tail
            self._in_prompt = False
            start = max(0, self.read_offset - PROMPT_CONTEXT)
            tail = self._decode(token_ids[start : self.read_offset])
            if not tail.endswith(REPLACEMENT):
                self.prefix_offset = start
                self._prefix_key, self._prefix_text = (start, self.read_offset), tail
        key = (self.prefix_offset, self.read_offset)
        if key != self._prefix_key:
            self._prefix_key = key
            self._prefix_text = self._decode(token_ids[self.prefix_offset : self.read_offset])
        return self._prefix_text

    def update(self, token_ids: list[int], end: int) -> int:
        """Take the tokens up to ``end``, one at a time (so a split character holds back only
        itself); returns how many characters ``text`` grew by."""
        grown = 0
        for stop in range(self.read_offset + 1, end + 1):
            prefix = self._prefix(token_ids)
            window = self._decode(token_ids[self.prefix_offset : stop])
            if len(window) > len(prefix) and not window.endswith(REPLACEMENT):
                self.text += window[len(prefix) :]
                grown += len(window) - len(prefix)
                self.prefix_offset, self.read_offset = self.read_offset, stop
        return grown

    def finish(self, token_ids: list[int], end: int) -> None:
        """Take every token up to ``end`` and everything held back (an unfinished character comes
        out as U+FFFD, as a full decode gives it)."""
        if not self.finished and end > self.read_offset:
            prefix = self._prefix(token_ids)
            window = self._decode(token_ids[self.prefix_offset : end])
            if len(window) > len(prefix):
                self.text += window[len(prefix) :]
            self.prefix_offset = self.read_offset = end
        self.finished = True


def detokenizer_of(seq: Sequence, tokenizer) -> IncrementalDetokenizer:
    if seq.detokenizer is None:
        seq.detokenizer = IncrementalDetokenizer(
            tokenizer, seq.num_prompt_tokens, seq.params.skip_special_tokens
        )
    return seq.detokenizer


def text_end(seq: Sequence) -> int:
    """How many of ``seq.token_ids`` make text: all, unless the last one is the EOS or stop token
    that finished the sequence (and the request did not ask for it), or a placeholder for a token
    the step in flight is still sampling (overlap scheduling; its text comes at the next poll)."""
    if (
        seq.finish_reason is FinishReason.STOP
        and not isinstance(seq.stop_reason, str)
        and not seq.params.include_stop_str_in_output
    ):
        return seq.num_tokens - 1
    return seq.num_known_tokens


def hold_back(seq: Sequence) -> int:
    """Characters a running sequence's visible text keeps back: a stop string may still start
    there, and then that text must never have been shown (vLLM holds back the same)."""
    stop = seq.params.stop
    if not stop or seq.params.include_stop_str_in_output:
        return 0
    return max(map(len, stop)) - 1


def visible_text(seq: Sequence, tokenizer) -> str:
    """The text of ``seq`` that is final: all of it once finished, else the stable part minus
    the stop-string hold-back. It only ever grows, so consecutive calls give stream deltas."""
    detok = detokenizer_of(seq, tokenizer)
    if seq.is_finished:
        detok.finish(seq.token_ids, text_end(seq))
        return detok.output_text
    detok.update(seq.token_ids, text_end(seq))
    keep = len(detok.text) - hold_back(seq)
    return detok.text[: max(0, keep)]


def final_text(seq: Sequence, tokenizer) -> str:
    """The output text of a finished ``seq``. Without a detokenizer yet, two decodes (no per-token
    work): the same text the incremental path gives."""
    assert seq.is_finished, seq
    return visible_text(seq, tokenizer)


class StopChecker:
    """Stop strings, checked on each new token's text. Built by the engine from its tokenizer and
    handed to the Scheduler, which calls it from ``_finish_reason`` for requests with ``stop``."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, seq: Sequence) -> bool:
        """Whether the text now holds one of ``seq.params.stop``, ending in this token's new text.
        Called for every token (the text must follow along), it looks only once ``min_tokens``
        tokens exist, as vLLM does. On a hit, the earliest stop string wins: it becomes
        ``seq.stop_reason`` and the text is cut before it (after it with
        ``include_stop_str_in_output``)."""
        detok = detokenizer_of(seq, self.tokenizer)
        grown = detok.update(seq.token_ids, seq.num_tokens)
        if not grown or seq.num_completion_tokens < seq.params.min_tokens:
            return False
        params, text = seq.params, detok.text
        start = max(0, len(text) - grown - max(map(len, params.stop)) + 1)
        hits = [(i, s) for s in params.stop if (i := text.find(s, start)) != -1]
        if not hits:
            return False
        i, s = min(hits, key=lambda h: (h[0], -len(h[1])))
        detok.stop_at = i + len(s) if params.include_stop_str_in_output else i
        seq.stop_reason = s
        return True
