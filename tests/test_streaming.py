"""Streaming (nanovllm/streaming.py): the deltas of every request of a mixed batch join to its
final text, with multi-byte characters in the vocabulary (some split over tokens); the async form
lets the event loop run between steps; closing a stream early aborts its request."""

from __future__ import annotations

import asyncio
import gc

import pytest

from nanovllm import LLM, RequestError, SamplingParams, UnknownRequestError

PROMPTS = [
    "Café au lait",
    "日本語の文章",
    "The block table maps",
    "Ελληνικά γράμματα and a much longer prompt that needs more than one block of the cache",
]


@pytest.fixture(scope="module", params=[False, True], ids=["overlap_off", "overlap_on"])
def llm(multibyte_model, request):
    """Both ways of stepping: overlap on (the GPU's default) leaves a placeholder as the last
    token of every running sequence between steps, which a stream must never decode."""
    with LLM(
        multibyte_model, kvcache_block_size=16, max_num_seqs=8, overlap_scheduling=request.param
    ) as engine:
        yield engine


def splits_a_character(tok, ids: list[int]) -> bool:
    """Whether some multi-byte character of the text is made of bytes from two tokens: decoding
    up to a token boundary ends in U+FFFD where the whole text has a real character."""
    full = tok.decode(ids, skip_special_tokens=True)
    for k in range(1, len(ids)):
        head = tok.decode(ids[:k], skip_special_tokens=True)
        if head.endswith("\ufffd") and len(head) <= len(full) and full[len(head) - 1] != "\ufffd":
            return True
    return False


def has_multibyte_char(text: str) -> bool:
    return any(ord(c) > 127 and c != "\ufffd" for c in text)


@pytest.fixture(scope="module")
def split_seeds(llm) -> list[int]:
    """Seeds whose sampled completion of PROMPTS[1] has a character split over tokens."""
    tok = llm.get_tokenizer()
    params = [SamplingParams(temperature=1.0, seed=s, max_tokens=64) for s in range(24)]
    outs = llm.generate([PROMPTS[1]] * 24, params, use_tqdm=False)
    seeds = [s for s, o in enumerate(outs) if splits_a_character(tok, o["token_ids"])]
    assert len(seeds) >= 2, "too few sampled completions split a character: pick other seeds"
    return seeds


def drive(first: dict, later: dict, start_after: int) -> tuple[dict, dict]:
    """Round-robin over the streams; ``later`` ones (factories) start after ``start_after``
    deltas, so their prefills share steps with the others' decodes. Returns the streams and
    their deltas."""
    streams, deltas = dict(first), {k: [] for k in [*first, *later]}
    live, pulled = dict(first), 0
    while live or later:
        for name, stream in list(live.items()):
            try:
                deltas[name].append(next(stream))
            except StopIteration:
                del live[name]
            pulled += 1
        if later and (pulled >= start_after or not live):
            started = {k: make() for k, make in later.items()}
            streams.update(started)
            live.update(started)
            later = {}
    return streams, deltas


def test_deltas_join_to_the_final_text_for_every_request_of_a_mixed_batch(llm, split_seeds):
    tok = llm.get_tokenizer()
    records = []
    unsubscribe = llm.subscribe(records.append)
    sampled = [SamplingParams(temperature=1.0, seed=s, max_tokens=64) for s in split_seeds[:2]]
    first = {f"split{i}": llm.stream(PROMPTS[1], p) for i, p in enumerate(sampled)}
    first["greedy"] = llm.stream(PROMPTS[0], SamplingParams(temperature=0, max_tokens=40))
    stop_params = SamplingParams(temperature=1.0, seed=5, max_tokens=60, stop=["e", "é"])
    later = {
        "long": lambda: llm.stream(PROMPTS[3], SamplingParams(temperature=0.9, seed=3)),
        "stop": lambda: llm.stream(PROMPTS[2], stop_params),
    }
    background = llm.add_request(PROMPTS[2], SamplingParams(temperature=0, max_tokens=50))
    streams, deltas = drive(first, later, start_after=6)
    unsubscribe()
    assert llm.is_request_finished(background)  # it kept batching alongside the streams
    assert llm.get_output(background).outputs[0].finish_reason in ("stop", "length")
    assert not llm.has_unfinished()
    assert max(len(r.seq_ids) for r in records) >= 5  # the streams shared steps
    assert any(r.num_prefill_tokens and r.num_decode_tokens for r in records)  # mixed steps
    for name, stream in streams.items():
        c = stream.output.outputs[0]
        assert all(deltas[name]), name  # no empty deltas
        assert "".join(deltas[name]) == c.text, name
        if c.stop_reason is None:  # no stop string cut it: the whole completion's decode
            ids = c.token_ids[:-1] if c.finish_reason == "stop" else c.token_ids
            assert c.text == tok.decode(ids, skip_special_tokens=True), name
    assert streams["stop"].output.outputs[0].stop_reason in ("e", "é")
    assert has_multibyte_char(streams["split0"].output.outputs[0].text)
    for name in ("split0", "split1"):  # the hard case: characters split over tokens
        assert splits_a_character(tok, streams[name].output["token_ids"])


def test_stream_output_matches_a_full_decode_and_generate(llm, split_seeds):
    tok = llm.get_tokenizer()
    params = SamplingParams(temperature=1.0, seed=split_seeds[0], max_tokens=64)
    stream = llm.stream(PROMPTS[1], params)
    joined = "".join(stream)
    c = stream.output.outputs[0]
    assert joined == c.text
    ids = c.token_ids[:-1] if c.finish_reason == "stop" else c.token_ids
    assert c.text == tok.decode(ids, skip_special_tokens=True)  # the independent oracle
    assert splits_a_character(tok, c.token_ids)  # the hard case happened here
    again = llm.generate([PROMPTS[1]], params, use_tqdm=False)[0]
    assert again.outputs[0].token_ids == c.token_ids and again.outputs[0].text == joined


def test_stop_strings_are_held_back_from_the_stream(llm):
    params = SamplingParams(temperature=1.0, seed=5, max_tokens=60)
    free = llm.generate([PROMPTS[2]], params, use_tqdm=False)[0].outputs[0].text
    stop = next(free[i : i + 2] for i in range(5, len(free) - 2) if free[i : i + 2].isalpha())
    params = SamplingParams(temperature=1.0, seed=5, max_tokens=60, stop=[stop])
    stream = llm.stream(PROMPTS[2], params)
    parts = list(stream)
    assert "".join(parts) == stream.output.outputs[0].text == free[: free.index(stop)]
    assert stream.output.outputs[0].stop_reason == stop


def test_async_stream_yields_to_the_event_loop_between_steps(llm):
    records = []
    unsubscribe = llm.subscribe(records.append)

    async def main():
        ticks, done = [], False

        async def ticker():  # stands in for the widget comms and the workbench's redraws
            while not done:
                ticks.append(len(records))
                await asyncio.sleep(0)

        async def consume(stream):
            return "".join([d async for d in stream]), stream

        task = asyncio.ensure_future(ticker())
        results = await asyncio.gather(
            consume(llm.astream(PROMPTS[0], SamplingParams(temperature=0, max_tokens=20))),
            consume(llm.astream(PROMPTS[1], SamplingParams(temperature=0.8, seed=1))),
        )
        done = True
        await task
        return ticks, results

    ticks, results = asyncio.run(main())
    unsubscribe()
    for joined, stream in results:
        assert joined == stream.output.outputs[0].text and stream.output.finished
    # the ticker ran between steps: it saw the step count at many different values
    assert len(set(ticks)) >= len(records) // 2 > 5


def test_closing_a_stream_early_aborts_its_request(llm):
    stream = llm.stream(PROMPTS[0], SamplingParams(max_tokens=200, ignore_eos=True))
    next(stream)
    rid = stream.request_id
    stream.close()
    assert not llm.has_unfinished() and stream.output is None
    with pytest.raises(UnknownRequestError):
        llm.get_output(rid)
    for _ in llm.stream(PROMPTS[0], SamplingParams(max_tokens=200, ignore_eos=True)):
        break  # a `break` out of the loop: the dropped stream aborts on garbage collection
    gc.collect()
    assert not llm.has_unfinished() and llm.check_integrity() == []
    with pytest.raises(RequestError, match="n=2"):
        llm.stream(PROMPTS[0], SamplingParams(n=2))


def test_a_stream_dropped_inside_a_step_is_aborted_at_the_next_safe_point(llm):
    """Garbage collection may finalize a dropped stream in the middle of a step; its request is
    only noted then, and aborted at the next step() or has_unfinished()."""
    from nanovllm.engine.core.sequence import SequenceStatus

    holder = {"stream": llm.stream(PROMPTS[0], SamplingParams(max_tokens=200, ignore_eos=True))}
    next(holder["stream"])
    rid = holder["stream"].request_id

    def drop(record):  # an observer runs inside step(), as a garbage collection could
        holder.pop("stream", None)
        gc.collect()

    unsubscribe = llm.subscribe(drop)
    llm.step()
    unsubscribe()
    assert "stream" not in holder and rid in llm.requests  # noted, not aborted inside the step
    assert llm.request_sequences(rid)[0].status is SequenceStatus.RUNNING
    assert not llm.has_unfinished()  # the next safe point aborted and dropped it
    assert rid not in llm.requests and llm.check_integrity() == []


def test_word_level_stream_starts_with_the_space_vllm_keeps(teaching_model):
    """The text is what the completion adds to the prompt (' five six ...' after 'one two three
    four'): the first delta carries the space, and the deltas still join to the final text, a
    stop string held back included."""
    with LLM(teaching_model, kvcache_block_size=16) as llm:
        greedy = SamplingParams(temperature=0, max_tokens=8, stop=["eight"])
        stream = llm.stream("one two three four", greedy)
        deltas = list(stream)
        assert deltas[0][0] == " " and "".join(deltas) == stream.output.outputs[0].text
        assert stream.output.outputs[0].text == " five six seven "

        async def consume():
            return "".join([d async for d in llm.astream("one two three four", greedy)])

        assert asyncio.run(consume()) == " five six seven "
