"""Incremental detokenization and stop strings (engine/core/detokenizer.py), on a tokenizer whose
vocabulary holds multi-byte characters, whole and split over byte tokens."""

from __future__ import annotations

import random

import pytest

from nanovllm import SamplingParams
from nanovllm.engine.core.detokenizer import (
    IncrementalDetokenizer,
    StopChecker,
    hold_back,
    text_end,
    visible_text,
)
from nanovllm.engine.core.sequence import FinishReason, Sequence, SequenceStatus


@pytest.fixture(scope="module")
def tok(multibyte_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(multibyte_model)


def byte_tokens(tok, text: str) -> list[int]:
    """The token ids of ``text`` one *byte* at a time (the byte-level alphabet's tokens)."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = {c for c in ByteLevel.alphabet()}
    ids = []
    for ch in ByteLevel(add_prefix_space=False).pre_tokenize_str(text):
        for c in ch[0]:
            assert c in alphabet
            ids.append(tok.convert_tokens_to_ids(c))
    return ids


def test_a_character_split_over_byte_tokens_is_held_back_until_whole(tok):
    prompt = tok.encode("Hello")
    ids = prompt + tok.encode(" ab") + byte_tokens(tok, "日") + tok.encode("c")
    assert len(ids) - len(prompt) == len(tok.encode(" ab")) + 3 + 1  # 日 is three byte tokens
    d = IncrementalDetokenizer(tok, len(prompt))
    texts = []
    for end in range(len(prompt) + 1, len(ids) + 1):
        d.update(ids, end)
        texts.append(d.text)
    n_ab = len(tok.encode(" ab"))
    assert texts[n_ab - 1] == " ab"
    assert texts[n_ab] == texts[n_ab + 1] == " ab"  # two of 日's three bytes: nothing new yet
    assert texts[n_ab + 2] == " ab日"
    assert texts[-1] == " ab日c"


def test_finish_emits_held_back_bytes_as_a_full_decode_does(tok):
    prompt = tok.encode("x")
    ids = prompt + tok.encode("ok") + byte_tokens(tok, "é")[:1]  # a dangling lead byte
    d = IncrementalDetokenizer(tok, len(prompt))
    d.update(ids, len(ids))
    assert d.text == "ok"
    d.finish(ids, len(ids))
    assert d.text == tok.decode(ids[len(prompt) :]) == "ok\ufffd"


@pytest.mark.parametrize("seed", range(6))
def test_incremental_text_equals_the_full_decode(tok, seed):
    """Random completions (byte tokens, multi-byte tokens, special tokens): taken one token at a
    time, the text only grows, never holds a broken character, and ends as the full decode."""
    rng = random.Random(seed)
    prompt = tok.encode("The cache is paged. ")
    completion = [rng.randrange(len(tok)) for _ in range(80)]
    ids = prompt + completion
    for skip in (True, False):
        d = IncrementalDetokenizer(tok, len(prompt), skip_special_tokens=skip)
        last = ""
        for end in range(len(prompt) + 1, len(ids) + 1):
            d.update(ids, end)
            assert d.text.startswith(last)
            last = d.text
            assert not d.text.endswith("\ufffd") or tok.decode(ids[len(prompt) : end]) == d.text
        d.finish(ids, len(ids))
        assert d.text == tok.decode(completion, skip_special_tokens=skip)


@pytest.fixture(scope="module")
def word_tok():
    """A word-level tokenizer like the teaching model's: its decoder joins words with spaces and
    cleans the space before punctuation, so a completion's text depends on the prompt before it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "one", "two", "three", "four", "five", "six", ",", "."]
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    model.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(tokenizer_object=model, unk_token="[UNK]")


@pytest.mark.parametrize("completion", ["five six", ", five six .", "five"])
def test_the_text_is_what_the_completion_adds_to_the_prompt(word_tok, completion):
    """vLLM's text: the suffix of decode(prompt + completion), so ``prompt + text`` reads right;
    ' five six' after 'one two three four' (a decode of the completion alone: 'five six')."""
    prompt = word_tok.encode("one two three four")
    ids = prompt + word_tok.encode(completion)
    whole = word_tok.decode(ids)
    d = IncrementalDetokenizer(word_tok, len(prompt))
    grown = []
    for end in range(len(prompt) + 1, len(ids) + 1):
        d.update(ids, end)
        grown.append(d.text)
    d.finish(ids, len(ids))
    assert "one two three four" + d.text == whole
    assert all(b.startswith(a) for a, b in zip(grown, grown[1:] + [d.text]))  # only grows
    assert (
        d.text
        == {"five six": " five six", ", five six .": ", five six.", "five": " five"}[completion]
    )


def test_a_prompt_ending_in_a_broken_character_starts_the_text_at_the_completion(tok):
    prompt = tok.encode("x") + byte_tokens(tok, "日")[:2]  # its decode ends in U+FFFD
    completion = tok.encode("ok")
    d = IncrementalDetokenizer(tok, len(prompt))
    d.finish(prompt + completion, len(prompt + completion))
    assert d.text == tok.decode(completion) == "ok"


def seq_with(tok, prompt: str, completion: list[int], **params) -> Sequence:
    seq = Sequence(0, tok.encode(prompt), SamplingParams(**params))
    seq.status = SequenceStatus.RUNNING
    seq.token_ids.extend(completion)
    return seq


def run_checker(tok, seq: Sequence, completion: list[int]) -> int | None:
    """Feed ``completion`` one token at a time as the scheduler does; the index of the token on
    which the checker fired, or None."""
    checker = StopChecker(tok)
    del seq.token_ids[seq.num_prompt_tokens :]
    for i, t in enumerate(completion):
        seq.token_ids.append(t)
        if checker(seq):
            return i
    return None


def test_stop_string_across_tokens_is_found_on_the_token_that_completes_it(tok):
    pieces = [" the", " block", " table", " is", " here"]
    completion = [t for p in pieces for t in tok.encode(p)]
    seq = seq_with(tok, "Q:", [], stop=["k tab"], max_tokens=50)
    hit = run_checker(tok, seq, completion)
    text = tok.decode(completion)
    # the token that completes "k tab": the first whose cumulative text contains it
    expected = next(i for i in range(len(completion)) if "k tab" in tok.decode(completion[: i + 1]))
    assert hit == expected
    assert seq.stop_reason == "k tab"
    seq.status, seq.finish_reason = SequenceStatus.FINISHED, FinishReason.STOP
    assert visible_text(seq, tok) == text[: text.index("k tab")] == " the bloc"


def test_include_stop_str_and_the_earliest_of_several_stops(tok):
    completion = tok.encode(" one two three four")
    seq = seq_with(tok, "Q:", [], stop=["four", "two", "thr"], include_stop_str_in_output=True)
    run_checker(tok, seq, completion)
    seq.status, seq.finish_reason = SequenceStatus.FINISHED, FinishReason.STOP
    assert seq.stop_reason == "two" and visible_text(seq, tok) == " one two"


def first_stop_ending_in_new_text(tok, completion: list[int], stop: str, min_tokens: int) -> int:
    """By hand: the first token (counting from min_tokens) whose new text ends an occurrence."""
    for i in range(min_tokens - 1, len(completion)):
        before, now = tok.decode(completion[:i]), tok.decode(completion[: i + 1])
        if any(now.startswith(stop, p) for p in range(len(before) - len(stop) + 1, len(now))):
            return i
    raise AssertionError("no occurrence")


def test_no_stop_string_match_before_min_tokens(tok):
    completion = tok.encode(" ab cd ab cd ab cd ab")
    seq = seq_with(tok, "Q:", [], stop=["ab"], min_tokens=4, max_tokens=40)
    hit = run_checker(tok, seq, completion)
    assert hit == first_stop_ending_in_new_text(tok, completion, "ab", 4)
    assert hit > first_stop_ending_in_new_text(tok, completion, "ab", 1)  # the guard mattered


def test_running_text_holds_back_where_a_stop_string_may_begin(tok):
    completion = tok.encode(" abcdef")
    seq = seq_with(tok, "Q:", completion, stop=["xyz1"])
    assert hold_back(seq) == 3
    assert visible_text(seq, tok) == " abcdef"[:-3]
    seq.status, seq.finish_reason = SequenceStatus.FINISHED, FinishReason.LENGTH
    assert visible_text(seq, tok) == " abcdef"


def test_the_final_eos_or_stop_token_makes_no_text(tok):
    eos = tok.eos_token_id
    completion = tok.encode(" fine") + [eos]
    seq = seq_with(tok, "Q:", completion, skip_special_tokens=False)
    seq.status, seq.finish_reason = SequenceStatus.FINISHED, FinishReason.STOP
    assert text_end(seq) == seq.num_tokens - 1
    assert visible_text(seq, tok) == " fine"  # not " fine<|endoftext|>"
    kept = seq_with(tok, "Q:", completion, skip_special_tokens=False, ignore_eos=True)
    kept.status, kept.finish_reason = SequenceStatus.FINISHED, FinishReason.LENGTH
    assert visible_text(kept, tok) == " fine<|endoftext|>"  # an EOS that did not stop it stays
