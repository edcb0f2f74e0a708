"""Bad input gets a clear typed error; the engine stays usable and loses no other request."""

from __future__ import annotations

import json
import math
import shutil
import signal
import time

import pytest

from nanovllm import (
    LLM,
    ConfigError,
    EngineClosedError,
    KVCacheTooSmallError,
    ModelLoadError,
    ModelNotFoundError,
    NanoVLLMError,
    RequestError,
    SamplingParams,
    UnknownRequestError,
    UnsupportedModelError,
)

GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16, max_model_len=256, max_num_seqs=8) as engine:
        yield engine


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        LLM(str(tmp_path / "nope"))
    # what Hugging Face raises there, so `except OSError` code written for it keeps working
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, OSError)
    assert isinstance(info.value, ModelNotFoundError)


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no config.json") as info:
        LLM(str(tmp_path))
    assert isinstance(info.value, OSError)


def test_unloadable_tokenizer_is_a_model_load_error(tiny_model, tmp_path):
    # the tokenizer loads on a thread beside the model: its error still reaches the caller, typed
    path = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model, path)
    (path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load a tokenizer"):
        LLM(str(path), kvcache_block_size=16, max_model_len=256)


def test_vllm_spellings_of_top_k_off():
    assert SamplingParams(top_k=0).top_k is None
    assert SamplingParams(top_k=-1).top_k is None
    assert SamplingParams(top_k=5).top_k == 5
    assert SamplingParams(stop="###").stop == ("###",)  # one string is one stop string


def test_unsupported_architecture(tiny_model, tmp_path):
    path = tmp_path / "gpt2"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel.*LlamaForCausalLM.*Qwen3Moe"):
        LLM(str(path))


def test_unknown_config_keyword(tiny_model):
    with pytest.raises(ConfigError, match="max_num_seq") as info:
        LLM(tiny_model, max_num_seq=4)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(kvcache_block_size=24), "power of two"),
        (dict(max_model_len=10**6), "max_position_embeddings"),
        (dict(max_num_seqs=0), "positive integer"),
        (dict(tensor_parallel_size=3), "does not divide"),
        (dict(dtype="int8"), "dtype"),
        (dict(gpu_memory_utilization=1.5), r"\(0, 1\]"),
        (dict(elementwise="fused"), "choose one of"),
        (dict(device="cpu", elementwise="compile"), "needs a CUDA device"),
        (dict(fused_kv_store="yes"), "True or False"),
    ],
)
def test_bad_config_values(tiny_model, bad, match):
    with pytest.raises(ConfigError, match=match):
        LLM(tiny_model, **bad)


def test_elementwise_auto_is_torch_on_cpu(tiny_model):
    from nanovllm.config import Config

    assert Config.from_model(tiny_model, device="cpu").elementwise == "torch"
    assert Config.from_model(tiny_model, device="cuda").elementwise == "triton"  # no GPU needed
    assert Config.from_model(tiny_model, device="cuda", enforce_eager=True).elementwise == "torch"


def test_triton_elementwise_on_cpu_only_under_the_interpreter(tiny_model, monkeypatch):
    """The Triton interpreter runs the kernels on CPU (tests); without it they need CUDA."""
    from nanovllm.config import Config

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert Config.from_model(tiny_model, device="cpu", elementwise="triton").elementwise == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        Config.from_model(tiny_model, device="cpu", elementwise="triton")


def test_kv_cache_too_small_for_one_sequence(tiny_model):
    with pytest.raises(KVCacheTooSmallError, match="num_kvcache_blocks>=8"):
        LLM(tiny_model, kvcache_block_size=16, max_model_len=128, num_kvcache_blocks=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=math.nan), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=math.nan), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(logprobs=-2), "logprobs"),
        (dict(stop_token_ids=[-1]), "stop_token_ids"),
        (dict(n=0), "n=0"),
        (dict(stop=[""]), "stop"),
        (dict(stop=[3]), "stop"),
        (dict(stop=5), "stop=5 must be a string or a list of strings, got int"),
        (dict(stop_token_ids=7), "stop_token_ids=7 must be a list of token ids"),
        (dict(min_tokens=9, max_tokens=8), "min_tokens"),
        (dict(min_tokens=-1), "min_tokens"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=math.inf), "repetition_penalty"),
        (dict(presence_penalty=2.5), "presence_penalty"),
        (dict(frequency_penalty=math.nan), "frequency_penalty"),
        (dict(skip_special_tokens="no"), "skip_special_tokens"),
    ],
)
def test_bad_sampling_values(kwargs, match):
    with pytest.raises(RequestError, match=match):
        SamplingParams(**kwargs)


@pytest.mark.parametrize(
    "prompt, params, match",
    [
        ([], GREEDY, "empty"),
        ("", GREEDY, "empty"),
        ([1, 2, 10**6], GREEDY, "outside the vocabulary"),
        ([1, -5], GREEDY, "outside the vocabulary"),
        ([1] * 256, SamplingParams(max_tokens=1), "no room for an output token"),
        ([1] * 300, None, "at most 255 tokens"),
        (3.5, GREEDY, "str, a list of token ids"),
        ({"prompt": [1, 2]}, GREEDY, "takes a str"),
        ({"prompt_token_ids": "hi"}, GREEDY, "takes a list of token ids"),
        ({"prompt": "a", "multi_modal_data": {}}, GREEDY, "not supported"),
        ([1, 2], "greedy", "SamplingParams"),
        (
            [1, 2],
            {"temperature": 0},
            r"got dict; build one from a dict with SamplingParams\(\*\*d\)",
        ),
        ([1, 2], SamplingParams(n=9), "n=9 samples cannot run at once with max_num_seqs=8"),
    ],
)
def test_bad_requests_leave_the_engine_usable(llm, prompt, params, match):
    good = llm.add_request([5, 6, 7], GREEDY)
    with pytest.raises(RequestError, match=match):
        llm.add_request(prompt, params)
    while llm.has_unfinished():
        llm.step()
    out = llm.get_output(good)
    assert len(out["token_ids"]) == 8 and out["finish_reason"] == "length"
    assert llm.check_integrity() == []


def test_generate_validates_every_prompt_before_queueing_any(llm):
    with pytest.raises(RequestError):
        llm.generate([[1, 2, 3], [], [4, 5]], GREEDY, use_tqdm=False)
    assert not llm.has_unfinished()
    with pytest.raises(RequestError, match="2 SamplingParams for 3 prompts"):
        llm.generate([[1], [2], [3]], [GREEDY, GREEDY], use_tqdm=False)
    with pytest.raises(RequestError, match="got dict; build one from a dict"):  # not its 2 keys
        llm.generate([[1]], {"temperature": 0, "max_tokens": 4}, use_tqdm=False)
    assert not llm.has_unfinished()


def test_sampling_params_changed_after_construction_are_validated_at_use(llm):
    params = SamplingParams(temperature=0, max_tokens=4)
    params.temperature = -1.0  # vLLM's SamplingParams is mutable; the bad value surfaces at use
    with pytest.raises(RequestError, match="temperature=-1.0"):
        llm.generate([[5, 6]], params, use_tqdm=False)
    params.temperature, params.ignore_eos = 0, True
    rid = llm.add_request([5, 6], params)
    params.max_tokens = 1  # a queued request keeps its own copy
    while llm.has_unfinished():
        llm.step()
    assert len(llm.get_output(rid)["token_ids"]) == 4
    params.stop = "x"  # normalized at use as when built: a str is one stop string
    assert params.clone().stop == ("x",) and llm.check_integrity() == []


# ---- the caller's exceptions: raised at once, never retried -------------------------------------
@pytest.fixture
def alarm_handler():
    """A watchdog's SIGALRM handler that raises TimeoutError (restored afterwards)."""

    def on_alarm(signum, frame):
        raise TimeoutError("watchdog: generate() took too long")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_a_signal_handlers_exception_inside_a_step_propagates_at_once(llm, alarm_handler):
    """A signal that lands while a step is launched: the handler's TimeoutError is the caller's,
    so generate() raises it (not a StepError, not retried) and the engine stays usable."""
    real_launch, steps = llm.executor.launch, []

    def launch_then_signal(inputs):
        steps.append(1)
        if len(steps) == 3:
            signal.raise_signal(signal.SIGALRM)  # the handler runs inside the step's launch
        return real_launch(inputs)

    llm.executor.launch = launch_then_signal
    try:
        with pytest.raises(TimeoutError, match="watchdog"):
            llm.generate(
                [[5, 6, 7]], SamplingParams(max_tokens=50, ignore_eos=True), use_tqdm=False
            )
    finally:
        del llm.executor.launch
    assert len(steps) == 3  # no retry after the handler raised
    assert not llm.has_unfinished() and llm.check_integrity() == []
    assert len(llm.generate([[5, 6, 7]], GREEDY, use_tqdm=False)[0]["token_ids"]) == 8


def test_a_watchdog_alarm_ends_a_long_generate(llm, alarm_handler):
    """The symptom: a watchdog's TimeoutError was swallowed and retried, and generate() went on.
    Wherever the alarm lands, the error reaches the caller within a step or two."""
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="watchdog"):
        llm.generate(
            [[5, 6, 7]] * 8, SamplingParams(max_tokens=240, ignore_eos=True), use_tqdm=False
        )
    assert time.monotonic() - t0 < 10  # the whole generate takes far longer on a slow machine
    assert not llm.has_unfinished() and llm.check_integrity() == []
    assert len(llm.generate([[5, 6, 7]], GREEDY, use_tqdm=False)[0]["token_ids"]) == 8


def test_abort_and_unknown_ids(llm):
    rid = llm.add_request([1, 2, 3, 4], SamplingParams(max_tokens=50, ignore_eos=True))
    llm.step()
    llm.abort(rid)
    assert llm.get_output(rid)["finish_reason"] == "abort"
    with pytest.raises(UnknownRequestError):
        llm.abort(rid)  # collected, so forgotten
    with pytest.raises(RequestError, match="not finished"):
        other = llm.add_request([1, 2], GREEDY)
        llm.get_output(other)
    llm.abort(other)
    assert llm.check_integrity() == []


def test_closed_engine_raises_and_close_is_idempotent(tiny_model):
    engine = LLM(tiny_model, kvcache_block_size=16)
    engine.close()
    engine.close()
    with pytest.raises(EngineClosedError):
        engine.generate("hello", use_tqdm=False)
    assert issubclass(EngineClosedError, NanoVLLMError)
