"""Code written for vLLM or nano-vllm runs here as written, on the tiny model.

The usage patterns of nano-vllm's ``example.py`` and ``bench.py`` and of vLLM's quick start are
re-typed here (the same calls, smaller numbers), not copied. ``ROWS`` is the compatibility table of
the README: each row's check runs against a live engine, and the README's section must equal the
table rendered from the rows (``NANOVLLM_WRITE_README=1`` rewrites it).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from pathlib import Path

import pytest

from nanovllm import LLM, RequestOutput, SamplingParams

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- compat-table: generated from tests/test_compat.py ROWS; do not edit by hand -->"
END = "<!-- /compat-table -->"


# ---- upstream usage patterns ---------------------------------------------------------------------
def test_nano_vllm_example_py(tiny_model, capsys):
    """example.py's calls: a tokenizer's chat template, generate, ``output['text']``."""
    from transformers import AutoTokenizer

    path = tiny_model
    tokenizer = AutoTokenizer.from_pretrained(path)
    llm = LLM(path, enforce_eager=True, tensor_parallel_size=1)
    sampling_params = SamplingParams(temperature=0.6, max_tokens=48)
    prompts = ["introduce yourself", "list all prime numbers within 100"]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        for prompt in prompts
    ]
    outputs = llm.generate(prompts, sampling_params)
    for prompt, output in zip(prompts, outputs):
        print("\n")
        print(f"Prompt: {prompt!r}")
        print(f"Completion: {output['text']!r}")
    llm.exit()
    printed = capsys.readouterr().out
    assert printed.count("Completion: ") == 2 and "<|im_start|>assistant" in printed
    assert all(isinstance(o["text"], str) and 0 < len(o["token_ids"]) <= 48 for o in outputs)
    assert llm.closed


@pytest.fixture(scope="module")
def tiny_4k() -> str:
    """bench.py asks for max_model_len=4096: the tiny model with that many positions."""
    from nanovllm.testing import tiny_model_path

    return str(tiny_model_path(max_position_embeddings=4096))


def test_nano_vllm_bench_py(tiny_4k):
    """bench.py's calls: random token-id prompts (also as vLLM's ``dict(prompt_token_ids=...)``),
    one SamplingParams per prompt, a warm-up generate, a timed one without a progress bar."""
    from random import randint, seed

    path = tiny_4k
    seed(0)
    num_seqs, max_input_len, max_ouput_len = 8, 96, 24  # bench.py: 256, 1024, 1024
    llm = LLM(path, enforce_eager=False, max_model_len=4096)
    prompt_token_ids = [
        [randint(0, 447) for _ in range(randint(10, max_input_len))] for _ in range(num_seqs)
    ]
    sampling_params = [
        SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=randint(10, max_ouput_len))
        for _ in range(num_seqs)
    ]
    llm.generate(["Benchmark: "], SamplingParams())
    t = time.time()
    outs = llm.generate(prompt_token_ids, sampling_params, use_tqdm=False)
    t = time.time() - t
    total_tokens = sum(sp.max_tokens for sp in sampling_params)
    throughput = total_tokens / t
    assert sum(len(o["token_ids"]) for o in outs) == total_tokens and throughput > 0
    vllm_style = [dict(prompt_token_ids=p) for p in prompt_token_ids]  # bench.py's vLLM line
    again = llm.generate(vllm_style, sampling_params, use_tqdm=False)
    assert [len(o["token_ids"]) for o in again] == [sp.max_tokens for sp in sampling_params]
    llm.exit()


def test_nano_vllm_manual_step_loop(tiny_model):
    """nano-vllm's LLMEngine.generate loop, written against the public API."""
    llm = LLM(tiny_model, kvcache_block_size=16)
    prompts = ["The KV cache is", "A paged engine", [5, 6, 7, 8]]
    sampling_params = SamplingParams(temperature=0, max_tokens=12)
    expected = [o["token_ids"] for o in llm.generate(prompts, sampling_params, use_tqdm=False)]
    for prompt in prompts:
        llm.add_request(prompt, sampling_params)
    outputs, signs = {}, set()
    while not llm.is_finished():
        output, num_tokens = llm.step()
        signs.add(num_tokens > 0)
        for seq_id, token_ids in output:
            outputs[seq_id] = token_ids
    outputs = [outputs[seq_id] for seq_id in sorted(outputs)]
    outputs = [{"text": llm.tokenizer.decode(t), "token_ids": t} for t in outputs]
    llm.exit()
    assert [o["token_ids"] for o in outputs] == expected
    assert signs == {True, False}  # prefill steps count positive, decode steps negative


def test_vllm_quickstart(tiny_model, capsys):
    prompts = [
        "Hello, my name is",
        "The president of the United States is",
        "The capital of France is",
        "The future of AI is",
    ]
    sampling_params = SamplingParams(temperature=0.8, top_p=0.95)
    llm = LLM(model=tiny_model)
    outputs = llm.generate(prompts, sampling_params)
    for output in outputs:
        prompt = output.prompt
        generated_text = output.outputs[0].text
        print(f"Prompt: {prompt!r}, Generated text: {generated_text!r}")
    assert [o.prompt for o in outputs] == prompts
    assert capsys.readouterr().out.count("Generated text: ") == 4
    for o in outputs:
        assert isinstance(o, RequestOutput) and o.finished
        assert o.outputs[0].text == o["text"] and o.prompt_token_ids == llm.tokenizer.encode(
            o.prompt
        )
        m = o.metrics
        assert m.arrival_time <= m.first_token_time <= m.finished_time
    llm.close()


# ---- the README's compatibility table ------------------------------------------------------------
# (origin, the call as people type it, what it does here, a check run against `llm`)
ROWS: list[tuple[str, str, str, str]] = [
    (
        "both",
        "LLM(model=path, enforce_eager=True, tensor_parallel_size=1)",
        "builds the engine; keywords are `Config` fields (an unknown one is a `ConfigError`)",
        "LLM(model=path, enforce_eager=True, tensor_parallel_size=1).close()",
    ),
    (
        "both",
        "llm.generate(prompts, sampling_params, use_tqdm=False)",
        "a `RequestOutput` per prompt, in order; one SamplingParams or one per prompt",
        "assert len(llm.generate(['a', 'b'], [GREEDY, GREEDY], use_tqdm=False)) == 2",
    ),
    (
        "vLLM",
        "outputs[0].outputs[0].text, .token_ids, .finish_reason, .stop_reason",
        "sample 0's text (special tokens skipped), ids, `stop`/`length`/`abort`/`error`, "
        "the stop string or stop token id",
        "c = llm.generate('a', GREEDY, use_tqdm=False)[0].outputs[0]\n"
        "assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)\n"
        "assert c.finish_reason == 'length' and c.stop_reason is None",
    ),
    (
        "nano-vllm",
        'output["text"], output["token_ids"]',
        "the same for sample 0: a `RequestOutput` is also a read-only dict (nano-vllm's keys, "
        "plus `finish_reason`, `num_cached_tokens`, `logprobs`, `error`)",
        "o = llm.generate('a', GREEDY, use_tqdm=False)[0]\n"
        "assert o['text'] == o.outputs[0].text and dict(o)['token_ids'] == o.outputs[0].token_ids",
    ),
    (
        "vLLM",
        "output.prompt, output.prompt_token_ids, output.request_id, output.metrics",
        "the prompt's text (None for token ids), its ids, an int id; arrival / first-token / "
        "finish times (`time.perf_counter()`)",
        "o = llm.generate('a b', GREEDY, use_tqdm=False)[0]\n"
        "assert o.prompt == 'a b' and o.prompt_token_ids == tok.encode('a b')\n"
        "assert o.metrics.arrival_time <= o.metrics.first_token_time <= o.metrics.finished_time",
    ),
    (
        "vLLM",
        'llm.generate({"prompt_token_ids": ids}) / {"prompt": text}',
        "`TokensPrompt` / `TextPrompt` dicts (other prompt fields: `RequestError`)",
        "a = llm.generate({'prompt_token_ids': [5, 6]}, GREEDY, use_tqdm=False)[0]\n"
        "assert a.prompt is None and a['token_ids'] == "
        "llm.generate([[5, 6]], GREEDY, use_tqdm=False)[0]['token_ids']",
    ),
    (
        "vLLM",
        "llm.chat(messages) / llm.chat([conversation, ...])",
        "renders each conversation with the tokenizer's chat template "
        "(`add_generation_prompt=True`), then generates",
        "msgs = [{'role': 'user', 'content': 'Hi'}]\n"
        "[o] = llm.chat(msgs, GREEDY, use_tqdm=False)\n"
        "assert o.prompt == tok.apply_chat_template(msgs, tokenize=False, "
        "add_generation_prompt=True)\n"
        "assert len(llm.chat([msgs, msgs], GREEDY, use_tqdm=False)) == 2",
    ),
    (
        "vLLM",
        "llm.get_tokenizer()",
        "the Hugging Face tokenizer",
        "assert llm.get_tokenizer() is tok",
    ),
    (
        "vLLM",
        "SamplingParams(n=4, seed=s)",
        "4 samples (`outputs[i]`, sample i seeded `s + i`); the prompt's full KV blocks are "
        "computed once and shared through the prefix cache",
        "o = llm.generate('x' * 40, SamplingParams(n=4, seed=1, max_tokens=2), use_tqdm=False)[0]\n"
        "assert [c.index for c in o.outputs] == [0, 1, 2, 3]\n"
        "assert all(c.num_cached_tokens > 0 for c in o.outputs[1:])",
    ),
    (
        "vLLM",
        'SamplingParams(stop=["\\n\\n"], include_stop_str_in_output=False)',
        "stops when the text holds a stop string; it is cut from `text` (kept with "
        "`include_stop_str_in_output`)",
        "c = llm.generate('a', SamplingParams(temperature=0, stop=['e']), use_tqdm=False)"
        "[0].outputs[0]\n"
        "assert 'e' not in c.text and (c.stop_reason == 'e' or c.finish_reason == 'length')",
    ),
    (
        "vLLM",
        "SamplingParams(min_tokens=8)",
        "no stop (EOS, stop tokens, stop strings) before 8 tokens; EOS and stop tokens "
        "are masked out until then",
        "c = llm.generate('a', SamplingParams(min_tokens=8, max_tokens=9), use_tqdm=False)"
        "[0].outputs[0]\n"
        "assert len(c.token_ids) >= 8",
    ),
    (
        "vLLM",
        "SamplingParams(repetition_penalty=1.2, presence_penalty=0.5, frequency_penalty=0.5)",
        "applied to the logits on the device (vLLM's formulas), in both attention backends",
        "llm.generate('a', SamplingParams(repetition_penalty=1.2, presence_penalty=0.5, "
        "frequency_penalty=0.5), use_tqdm=False)",
    ),
    (
        "vLLM",
        "SamplingParams(top_k=-1) / top_k=0",
        "top-k off (vLLM's spellings; `None` works too)",
        "assert SamplingParams(top_k=-1).top_k is None and SamplingParams(top_k=0).top_k is None",
    ),
    (
        "both",
        "SamplingParams(temperature=0, top_p=0.9, seed=1, stop_token_ids=[2], ignore_eos=True)",
        "as in vLLM (`temperature=0` is greedy; a seed repeats whatever the batch)",
        "llm.generate('a', SamplingParams(temperature=0, top_p=0.9, seed=1, stop_token_ids=[2], "
        "ignore_eos=True), use_tqdm=False)",
    ),
    (
        "vLLM",
        "SamplingParams(logprobs=2); c.logprobs[i][token_id]",
        "`Logprob(logprob, rank, decoded_token)` per position: the sampled token and the 2 most "
        "likely, from the raw logits; `cumulative_logprob`",
        "c = llm.generate('a', SamplingParams(temperature=0, logprobs=2, max_tokens=3), "
        "use_tqdm=False)[0].outputs[0]\n"
        "lp = c.logprobs[0][c.token_ids[0]]\n"
        "assert lp.rank == 1 and lp.decoded_token == tok.decode([c.token_ids[0]])\n"
        "assert abs(c.cumulative_logprob - sum(p[t].logprob for p, t in "
        "zip(c.logprobs, c.token_ids))) < 1e-6",
    ),
    (
        "vLLM",
        "SamplingParams(skip_special_tokens=False)",
        "special tokens stay in `text` (the final EOS or stop token never does, as in vLLM)",
        "SamplingParams(skip_special_tokens=False)",
    ),
    (
        "vLLM",
        "SamplingParams(min_p=0.1), best_of, logit_bias, ...",
        "not supported: a `TypeError` naming the keyword",
        "import pytest\nwith pytest.raises(TypeError, match='min_p'):\n"
        "    SamplingParams(min_p=0.1)",
    ),
    (
        "nano-vllm",
        "llm.add_request(prompt, sampling_params)",
        "queues a request, returns its id (`llm.get_output(id)` collects it)",
        "rid = llm.add_request('a', GREEDY)\n"
        "while llm.has_unfinished():\n    llm.step()\n"
        "assert llm.get_output(rid).finished",
    ),
    (
        "nano-vllm",
        "while not llm.is_finished(): outputs, num_tokens = llm.step()",
        "`is_finished()` is `not has_unfinished()`; a `StepRecord` unpacks into nano-vllm's "
        "(finished `(seq_id, token_ids)` list, tokens; negative for decode)",
        "llm.add_request('a', GREEDY)\n"
        "done = []\n"
        "while not llm.is_finished():\n    outputs, num_tokens = llm.step()\n"
        "    done += outputs\n"
        "assert len(done) == 1 and len(done[0][1]) == GREEDY.max_tokens\n"
        "for seq_id, _ in done:\n    llm.get_output(seq_id)",
    ),
    (
        "nano-vllm",
        "llm.exit()",
        "`close()`: frees workers, device memory, shared memory (idempotent)",
        "other = LLM(path)\nother.exit()\nother.exit()\nassert other.closed",
    ),
    (
        "the design",
        'llm.get_metrics()["avg_prefill_time"], ["avg_decode_time"], ["avg_tokens_per_second"]',
        "the design's names: mean step time with prefill / of decode-only steps (seconds), "
        "generated tokens per second of step time",
        "llm.generate('a', GREEDY, use_tqdm=False)\n"
        "m = llm.get_metrics()\n"
        "assert m['avg_prefill_time'] == m['avg_prefill_step_time'] > 0\n"
        "assert m['avg_tokens_per_second'] == m['generated_tokens_per_s'] > 0",
    ),
    (
        "this engine",
        "for delta in llm.stream(prompt, sp): ... / async for delta in llm.astream(...)",
        "text deltas as they are generated (whole UTF-8 characters; other requests keep "
        "batching); `.output` is the RequestOutput",
        "s = llm.stream('a', GREEDY)\nassert ''.join(s) == s.output.outputs[0].text\n"
        "async def run():\n    return ''.join([d async for d in llm.astream('a', GREEDY)])\n"
        "assert asyncio.run(run()) == s.output.outputs[0].text",
    ),
    (
        "Hugging Face",
        "except OSError: around LLM('/no/such/dir')",
        "`ModelNotFoundError`: a `ModelLoadError` and a `FileNotFoundError`, as "
        "`from_pretrained` raises",
        "import pytest\nwith pytest.raises(FileNotFoundError):\n    LLM('/no/such/dir')",
    ),
]


@pytest.fixture(scope="module")
def engine(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        yield llm


@pytest.mark.parametrize("row", ROWS, ids=[r[1][:40] for r in ROWS])
def test_compat_row(row, engine, tiny_model):
    origin, call, here, check = row
    namespace = dict(
        llm=engine,
        tok=engine.get_tokenizer(),
        path=tiny_model,
        LLM=LLM,
        SamplingParams=SamplingParams,
        GREEDY=SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
        asyncio=asyncio,
    )
    exec(compile(check, f"<compat row {call!r}>", "exec"), namespace)
    assert not engine.has_unfinished() and engine.check_integrity() == []


def render_table() -> str:
    lines = ["| from | call | what it does here |", "| --- | --- | --- |"]
    for origin, call, here, _ in ROWS:
        code = call.replace("|", "\\|")  # a | inside a table cell must be escaped
        lines.append(f"| {origin} | `{code}` | {here} |")
    return "\n".join(lines)


def test_readme_compat_table_is_generated_from_the_rows():
    text = README.read_text()
    table = f"{BEGIN}\n{render_table()}\n{END}"
    if os.environ.get("NANOVLLM_WRITE_README"):
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        README.write_text(head + table + tail)
        text = README.read_text()
    assert table in text, textwrap.dedent(
        """README.md's compatibility table differs from tests/test_compat.py ROWS; rewrite it
        with: NANOVLLM_WRITE_README=1 python -m pytest tests/test_compat.py -k readme"""
    )
