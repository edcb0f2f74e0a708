"""Code written for vLLM or nano-vllm runs here as written, on the tiny model.

The usage patterns of nano-vllm's ``example.py`` and ``bench.py`` and of vLLM's quick start are
re-typed here (the same calls, smaller numbers), not copied. vLLM's own example scripts
(``tests/vllm_examples/``: ``basic/generate.py``, ``basic/chat.py``,
``basic_with_model_default_sampling.py``, vendored verbatim under their Apache-2.0 header) run as
written against ``tests/vllm_shim/vllm``, a package that only re-exports nanovllm's names; the
model names they hard-code are made local directories of the tiny model. ``ROWS`` is the
compatibility table of the README: each row's check runs against a live engine, and the README's
section must equal the table rendered from the rows (``NANOVLLM_WRITE_README=1`` rewrites it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import runpy
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nanovllm import LLM, ConfigError, EngineArgs, RequestError, RequestOutput, SamplingParams
from nanovllm.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = Path(__file__).resolve().parent / "vllm_examples"
SHIM = Path(__file__).resolve().parent / "vllm_shim"
# like Qwen2.5-Instruct's generation_config.json (the token ids are the tiny model's)
QWEN_GENERATION_CONFIG = dict(
    bos_token_id=0,
    do_sample=True,
    eos_token_id=0,
    pad_token_id=0,
    repetition_penalty=1.1,
    temperature=0.7,
    top_k=20,
    top_p=0.8,
)
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


# ---- vLLM's example scripts, run as written ------------------------------------------------------
def local_model(tiny_model: str, where: Path, generation_config: dict | None = None) -> None:
    """``where`` (a hub-style name, relative to the working directory) holds the tiny model:
    links to its files, and ``generation_config`` written as its generation_config.json."""
    where.mkdir(parents=True)
    for f in Path(tiny_model).iterdir():
        if not (generation_config and f.name == "generation_config.json"):
            (where / f.name).symlink_to(f)
    if generation_config:
        (where / "generation_config.json").write_text(json.dumps(generation_config))


@pytest.fixture
def vllm_examples(tiny_model, tmp_path, monkeypatch):
    """``import vllm`` finds the shim; the examples' model names are local directories; every
    ``LLM.generate`` call is recorded: ``(engine, prompts, sampling params, outputs)``."""
    local_model(tiny_model, tmp_path / "meta-llama/Llama-3.2-1B-Instruct")
    local_model(tiny_model, tmp_path / "Qwen/Qwen2.5-0.5B-Instruct", QWEN_GENERATION_CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(SHIM))
    calls = []
    real_generate = LLM.generate

    def recorded(self, prompts, sampling_params=None, use_tqdm=True):
        outputs = real_generate(self, prompts, sampling_params, use_tqdm)
        calls.append((self, prompts, sampling_params, outputs))
        return outputs

    monkeypatch.setattr(LLM, "generate", recorded)

    def run(script: str, *args: str) -> list:
        monkeypatch.setattr(sys, "argv", [script, *args])
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        return calls

    yield run
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]
    for llm, *_ in calls:
        llm.close()


def printed_texts(out: str, outputs) -> None:
    for o in outputs:
        assert f"Generated text: {o.outputs[0].text!r}" in out


def test_vllm_generate_py_as_written(vllm_examples, capsys):
    """basic/generate.py: EngineArgs.add_cli_args, LLM(**vars(args)), the default sampling
    params changed by the flags given; without flags, vLLM's defaults (max_tokens=16)."""
    [(llm, prompts, params, outputs)] = vllm_examples("generate.py")
    assert llm.config.model.endswith("meta-llama/Llama-3.2-1B-Instruct")
    assert params == SamplingParams() and params.max_tokens == 16
    for c in (o.outputs[0] for o in outputs):
        assert (len(c.token_ids), c.finish_reason) == (16, "length") or c.finish_reason == "stop"
    printed_texts(capsys.readouterr().out, outputs)

    flags = "--max-tokens 5 --temperature 0 --top-k 3 --top-p 0.9 --block-size 16 -tp 1"
    flags += " --max-model-len 128 --seed 7 --no-enable-prefix-caching --dtype float"
    [_, (llm, _, params, outputs)] = vllm_examples("generate.py", *flags.split())
    cfg = llm.config
    assert (cfg.kvcache_block_size, cfg.max_model_len, cfg.seed, cfg.dtype) == (
        16,
        128,
        7,
        "float32",
    )
    assert not cfg.enable_prefix_caching and cfg.tensor_parallel_size == 1
    assert (params.max_tokens, params.temperature, params.top_k, params.top_p) == (5, 0, 3, 0.9)
    assert all(len(o.outputs[0].token_ids) <= 5 for o in outputs)
    printed_texts(capsys.readouterr().out, outputs)


def test_vllm_chat_py_as_written(vllm_examples, tiny_model, tmp_path, capsys):
    """basic/chat.py: one conversation, then ten with a progress bar, then a chat template."""
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    calls = vllm_examples(
        "chat.py", "--max-tokens", "4", "--block-size", "16", "--chat-template-path", str(template)
    )
    assert [len(prompts) for _, prompts, _, _ in calls] == [1, 10, 10]
    llm, prompts, params, outputs = calls[0]
    conversation_start = "You are a helpful assistant"
    assert conversation_start in prompts[0]["prompt"] and params.max_tokens == 4
    assert calls[2][1][0]["prompt"].startswith(f"[system] {conversation_start}\n[user] Hello\n")
    out = capsys.readouterr().out
    for *_, outputs in calls:
        printed_texts(out, outputs)


def test_vllm_default_sampling_example_as_written(vllm_examples, capsys, caplog):
    """basic_with_model_default_sampling.py: LLM(generation_config="auto"), the checkpoint's
    sampling defaults, temperature changed on the object before use."""
    with caplog.at_level(logging.INFO, logger="nanovllm"):
        [(llm, prompts, params, outputs)] = vllm_examples("basic_with_model_default_sampling.py")
    assert llm.config.generation_config == "auto" and len(prompts) == 4
    expected = SamplingParams(temperature=0.5, top_k=20, top_p=0.8, repetition_penalty=1.1)
    assert params == expected  # the file's values, and the example's change
    assert "generation_config.json" in caplog.text  # said, as vLLM says it
    out = capsys.readouterr().out
    assert out.count("Prompt: ") == 4
    for o in outputs:
        assert f"Prompt: {o.prompt!r}, Generated text: {o.outputs[0].text!r}" in out


# ---- vLLM's idioms, one by one -------------------------------------------------------------------
def test_get_default_sampling_params_reads_generation_config(tiny_model, tmp_path, caplog):
    where = tmp_path / "qwen"
    local_model(tiny_model, where, dict(QWEN_GENERATION_CONFIG, max_new_tokens=7, min_p=0.05))
    with caplog.at_level(logging.WARNING, logger="nanovllm"):
        cfg = Config.from_model(where)
    assert "min_p" in caplog.text  # not implemented here: said, not silently dropped
    assert dict(cfg.sampling_defaults) == dict(
        temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.1, max_tokens=7
    )
    assert Config.from_model(where, generation_config="vllm").sampling_defaults == ()
    other = tmp_path / "other"
    other.mkdir()
    (other / "generation_config.json").write_text(json.dumps(dict(temperature=0.3)))
    assert Config.from_model(tiny_model, generation_config=str(other)).sampling_defaults == (
        ("temperature", 0.3),
    )
    with pytest.raises(ConfigError, match="no generation_config.json there"):
        Config.from_model(tiny_model, generation_config=str(tmp_path))
    (other / "generation_config.json").write_text(json.dumps(dict(temperature=-1)))
    with pytest.raises(ConfigError, match="temperature=-1"):
        Config.from_model(tiny_model, generation_config=str(other))
    with LLM(str(where), kvcache_block_size=16) as llm:
        a, b = llm.get_default_sampling_params(), llm.get_default_sampling_params()
        assert a == SamplingParams(**dict(llm.config.sampling_defaults)) and a is not b
        out = llm.generate("a b", use_tqdm=False)[0]  # no params: the checkpoint's defaults
        assert len(out.outputs[0].token_ids) <= 7


def test_vllm_keyword_spellings(tiny_model):
    import torch

    cfg = Config.from_model(tiny_model, block_size=32, dtype="half")
    assert (cfg.kvcache_block_size, cfg.dtype) == (32, "float16")
    assert Config.from_model(tiny_model, dtype=torch.bfloat16).dtype == "bfloat16"
    assert Config.from_model(tiny_model, dtype="float").dtype == "float32"
    assert Config.from_model(tiny_model, load_format="dummy").load_format == "random"
    none = Config.from_model(tiny_model, max_num_seqs=None, block_size=None)  # vLLM's "default"
    assert (none.max_num_seqs, none.kvcache_block_size) == (512, 256)
    Config.from_model(tiny_model, trust_remote_code=False, disable_log_stats=True)
    for bad, match in [
        (dict(trust_remote_code=True), "runs only the architectures it implements"),
        (dict(disable_log_stats=False), "llm.get_metrics()"),
        (dict(num_gpu_blocks_override=64), "nearest: num_kvcache_blocks"),
        (dict(quantization="fp8"), "no quantization"),
        (dict(swap_space=4), "preempted request is recomputed"),
        (dict(async_scheduling=True), "overlap_scheduling"),
        (dict(block_size=16, kvcache_block_size=32), "not both"),
        (dict(max_num_seq=4), "did you mean {'max_num_seq': 'max_num_seqs'}"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Config.from_model(tiny_model, **bad)


def test_seed_also_seeds_pythons_random_as_vllm_does(tiny_model):
    draws = []
    for _ in range(2):
        random.seed(12345)
        with LLM(tiny_model, seed=3, kvcache_block_size=16):
            draws.append(random.random())
    random.seed(3)
    assert draws == [random.random()] * 2  # what vLLM 0.32 gives too: 0.23796462709189137


def test_engine_args_round_trip():
    parser = argparse.ArgumentParser()
    assert EngineArgs.add_cli_args(parser) is parser
    parser.add_argument("--max-tokens", type=int)  # an example's own flag stays out
    args = parser.parse_args(
        "--model m -tp 2 --block-size 16 --enforce-eager --max-tokens 3".split()
    )
    engine_args = EngineArgs.from_cli_args(args)
    assert engine_args == EngineArgs(
        model="m", tensor_parallel_size=2, block_size=16, enforce_eager=True
    )
    assert parser.parse_args(["--no-enable-prefix-caching"]).enable_prefix_caching is False


def test_speculative_config_from_the_command_line(teaching_model):
    """--speculative-config takes vLLM's JSON; the engine it builds drafts with n-gram lookup."""
    parser = EngineArgs.add_cli_args(argparse.ArgumentParser())
    spec = '{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 2}'
    args = parser.parse_args(["--model", teaching_model, "--speculative-config", spec])
    engine_args = EngineArgs.from_cli_args(args)
    assert engine_args.speculative_config == {
        "method": "ngram",
        "num_speculative_tokens": 3,
        "prompt_lookup_max": 2,
    }
    with LLM(**dataclasses.asdict(engine_args)) as llm:
        assert llm.config.speculative_config.num_speculative_tokens == 3
    with pytest.raises(SystemExit):  # not JSON: argparse's usage error, as in vLLM
        parser.parse_args(["--speculative-config", "ngram"])


def test_max_tokens_as_vllm_counts_them(tiny_model):
    """Default 16; None: up to max_model_len; prompt + max_tokens past max_model_len stops there
    ("length"); a prompt that leaves no room is a RequestError (as vLLM 0.32 on one checkpoint)."""
    with LLM(tiny_model, kvcache_block_size=16, max_model_len=64) as llm:
        prompt = [5, 6, 7, 8]

        def run(**params):
            [o] = llm.generate([prompt], SamplingParams(ignore_eos=True, **params), use_tqdm=False)
            return len(o.outputs[0].token_ids), o.outputs[0].finish_reason

        assert SamplingParams().max_tokens == 16 and run() == (16, "length")
        assert run(max_tokens=100) == (60, "length") == run(max_tokens=None)
        assert run(max_tokens=None, min_tokens=60) == (60, "length")
        with pytest.raises(RequestError, match="min_tokens=61 exceeds the 60 tokens"):
            run(max_tokens=None, min_tokens=61)
        with pytest.raises(RequestError, match="leaves no room for an output token"):
            llm.generate([[5] * 64], SamplingParams(max_tokens=1), use_tqdm=False)
        assert llm.check_integrity() == []


def test_the_text_keeps_the_leading_space_vllm_keeps(teaching_model):
    """On the teaching model (a word-level tokenizer), vLLM 0.32 gives ' five six seven eight'
    for 'one two three four': the text is what the completion adds to the decoded prompt."""
    with LLM(teaching_model, kvcache_block_size=16) as llm:
        greedy = SamplingParams(temperature=0, max_tokens=4)
        [o] = llm.generate(["one two three four"], greedy, use_tqdm=False)
        text = o.outputs[0].text
        assert text == " five six seven eight"
        assert o.prompt + text == llm.tokenizer.decode(o.prompt_token_ids + o.outputs[0].token_ids)
        assert "".join(llm.stream("one two three four", greedy)) == text


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
        "sample 0's text: what it adds to the decoded prompt, as in vLLM, so `prompt + text` "
        "reads right (a word-level tokenizer gives ' five six' after 'one two three four'); "
        "special tokens skipped; ids, `stop`/`length`/`abort`/`error`, the stop string or id",
        "o = llm.generate('a', GREEDY, use_tqdm=False)[0]\n"
        "c, ids = o.outputs[0], o.prompt_token_ids\n"
        "assert o.prompt + c.text == tok.decode(ids + c.token_ids, skip_special_tokens=True)\n"
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
        "sp = llm.get_default_sampling_params(); sp.temperature = 0.5",
        "a new `SamplingParams` with the checkpoint's generation_config.json sampling values "
        "(`LLM(generation_config='auto')`, the default; `'vllm'`: none; or a directory); "
        "`generate(prompts)` without params uses them. vLLM's "
        "`basic_with_model_default_sampling.py` runs unchanged",
        "sp = llm.get_default_sampling_params()\n"
        "sp.temperature = 0.5\n"
        "assert sp == SamplingParams(temperature=0.5) and llm.get_default_sampling_params() "
        "== SamplingParams()",
    ),
    (
        "vLLM",
        "sp = SamplingParams(); sp.max_tokens = 4; llm.generate(p, sp)",
        "mutable as vLLM's; validated when built and again at use (`RequestError`), and a "
        "queued request keeps its own copy",
        "import pytest\n"
        "sp = SamplingParams(temperature=0, ignore_eos=True)\n"
        "sp.max_tokens = 4\n"
        "assert len(llm.generate('a', sp, use_tqdm=False)[0].outputs[0].token_ids) == 4\n"
        "sp.top_p = 0.0\n"
        "with pytest.raises(RequestError, match='top_p'):\n"
        "    llm.generate('a', sp, use_tqdm=False)",
    ),
    (
        "vLLM",
        "SamplingParams() / max_tokens=None / prompt + max_tokens > max_model_len",
        "vLLM's default `max_tokens=16`; `None`: up to `max_model_len`; past it the request "
        "stops there with finish reason `length`; a prompt that leaves no room: `RequestError`",
        "long = [5] * (llm.config.max_model_len - 8)\n"
        "for sp in SamplingParams(max_tokens=None), SamplingParams(max_tokens=100):\n"
        "    sp.ignore_eos = True\n"
        "    c = llm.generate([long], sp, use_tqdm=False)[0].outputs[0]\n"
        "    assert (len(c.token_ids), c.finish_reason) == (8, 'length')\n"
        "assert SamplingParams().max_tokens == 16",
    ),
    (
        "vLLM",
        "LLM(path, block_size=16, dtype='half', seed=0, generation_config='auto', "
        "disable_log_stats=True, trust_remote_code=False)",
        "vLLM's spellings: `block_size` is `kvcache_block_size`; `dtype` also 'half', 'float' or "
        "a `torch.dtype`; `seed` also seeds `random`, numpy and torch, as vLLM's workers do; "
        "`None` means the default; vLLM keywords for what this engine lacks (`quantization`, "
        "`swap_space`, ...): a `ConfigError` naming the nearest setting",
        "import pytest\n"
        "from nanovllm.config import Config\n"
        "c = Config.from_model(path, block_size=16, dtype='half', seed=0, generation_config="
        "'auto', disable_log_stats=True, trust_remote_code=False)\n"
        "assert (c.kvcache_block_size, c.dtype) == (16, 'float16')\n"
        "with pytest.raises(ConfigError, match='num_kvcache_blocks'):\n"
        "    LLM(path, num_gpu_blocks_override=8)",
    ),
    (
        "vLLM",
        "EngineArgs.add_cli_args(parser); LLM(**vars(parser.parse_args()))",
        "the argparse flags of this engine's settings under vLLM's names (`--model`, `--dtype`, "
        "`--block-size`, `-tp`, `--enforce-eager`, ...); `EngineArgs.from_cli_args(args)`. "
        "vLLM's `basic/generate.py` and `basic/chat.py` run unchanged",
        "import argparse\n"
        "parser = EngineArgs.add_cli_args(argparse.ArgumentParser())\n"
        "args = vars(parser.parse_args(['--model', path, '--block-size', '16']))\n"
        "LLM(**args).close()",
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
        "this engine",
        "SamplingParams(stop=5); llm.generate(p, {'temperature': 0}); SamplingParams(n=1000)",
        "`RequestError`s that say what to pass: a stop string or a list of them; a "
        "`SamplingParams` (built from the dict with `SamplingParams(**d)`); `n <= max_num_seqs`",
        "import pytest\n"
        "with pytest.raises(RequestError, match='list of strings'):\n"
        "    SamplingParams(stop=5)\n"
        "with pytest.raises(RequestError, match='build one from a dict'):\n"
        "    llm.generate('a', {'temperature': 0}, use_tqdm=False)\n"
        "with pytest.raises(RequestError, match='max_num_seqs'):\n"
        "    llm.generate('a', SamplingParams(n=1000), use_tqdm=False)",
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
        "this engine",
        "signal.signal(signal.SIGALRM, watchdog); llm.subscribe(callback); llm.generate(...)",
        "an exception from the caller's code is never retried or swallowed: a signal handler's "
        "is raised at once, a step observer's once the call's requests are done, as "
        "`ObserverError` with their outputs in `.outputs`; the engine stays usable (a step that "
        "fails in the engine's own code is retried once, then fails its requests)",
        "import signal, pytest\n"
        "from nanovllm import ObserverError\n"
        "off = llm.subscribe(lambda record: 1 / 0)\n"
        "try:\n"
        "    with pytest.raises(ObserverError) as e:\n"
        "        llm.generate('a', GREEDY, use_tqdm=False)\n"
        "finally:\n"
        "    off()\n"
        "assert len(e.value.outputs[0].outputs[0].token_ids) == GREEDY.max_tokens\n"
        "def watchdog(signum, frame):\n    raise TimeoutError('watchdog')\n"
        "old = signal.signal(signal.SIGALRM, watchdog)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
        "try:\n"
        "    with pytest.raises(TimeoutError):\n"
        "        llm.generate([[5]] * 4, SamplingParams(max_tokens=250, ignore_eos=True), "
        "use_tqdm=False)\n"
        "finally:\n"
        "    signal.setitimer(signal.ITIMER_REAL, 0)\n"
        "    signal.signal(signal.SIGALRM, old)",
    ),
    (
        "this engine",
        "LLM(path, tensor_parallel_size=2, step_timeout_s=600, heartbeat_timeout_s=10)",
        "a worker that dies or raises: `WorkerError` at once; a hung one (stopped, frozen) is "
        "silent and named after `heartbeat_timeout_s`; a slow step keeps beating and gets "
        "`step_timeout_s` (also the process group's timeout)",
        "from nanovllm.config import Config\n"
        "c = Config.from_model(path, step_timeout_s=900, heartbeat_timeout_s=20)\n"
        "assert (c.step_timeout_s, c.heartbeat_timeout_s) == (900, 20)",
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
        EngineArgs=EngineArgs,
        RequestError=RequestError,
        ConfigError=ConfigError,
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
