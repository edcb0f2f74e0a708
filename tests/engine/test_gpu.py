"""GPU checks (run on the device machine; skipped without CUDA): the Triton backend and CUDA
graphs against the torch reference backend and Hugging Face, on a random Qwen3-0.6B."""

from __future__ import annotations

import random

import pytest
import torch

from nanovllm import LLM, SamplingParams

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def qwen3_06b(tmp_path_factory):
    from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model

    return str(
        make_random_model(
            tmp_path_factory.mktemp("qwen3"), QWEN3_0_6B, dtype="float32", device="cuda"
        )
    )


def mixed_prompts():
    rng = random.Random(0)
    shared = [rng.randrange(10000) for _ in range(300)]  # > one 256-token block: prefix hits
    prompts = [[rng.randrange(10000) for _ in range(n)] for n in (1, 7, 100, 255, 256, 257, 700)]
    return prompts + [shared + [1, 2, 3], shared + [4, 5]]


def generate(path, prompts, params, **config):
    with LLM(path, max_model_len=2048, gpu_memory_utilization=0.5, **config) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
        assert llm.check_integrity() == []
        return outs, llm.get_metrics()


GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0)


def test_triton_equals_torch_ref_in_float32_with_chunks_prefix_hits_and_graphs(qwen3_06b):
    prompts = mixed_prompts()
    ref, _ = generate(
        qwen3_06b,
        prompts,
        GREEDY,
        dtype="float32",
        attention_backend="torch_ref",
        enforce_eager=True,
    )
    for eager in (True, False):
        outs, m = generate(
            qwen3_06b,
            prompts,
            GREEDY,
            dtype="float32",
            attention_backend="triton",
            enforce_eager=eager,
            max_num_batched_tokens=512,
            max_num_seqs=4,
        )
        assert m["prefix_hit_tokens"] > 0 and m["prefill_steps"] > 3
        assert [o["token_ids"] for o in outs] == [o["token_ids"] for o in ref]
        for a, b in zip(outs, ref):
            torch.testing.assert_close(
                torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=2e-3, rtol=0
            )


def test_triton_matches_transformers_greedy(qwen3_06b):
    from transformers import AutoModelForCausalLM

    prompts = mixed_prompts()[:5]
    outs, _ = generate(qwen3_06b, prompts, GREEDY, dtype="float32", attention_backend="triton")
    hf = AutoModelForCausalLM.from_pretrained(qwen3_06b, dtype=torch.float32).cuda().eval()
    for prompt, out in zip(prompts, outs):
        ref = hf.generate(
            torch.tensor([prompt], device="cuda"),
            do_sample=False,
            max_new_tokens=24,
            min_new_tokens=24,
            pad_token_id=0,
        )[0, len(prompt) :].tolist()
        assert out["token_ids"] == ref


def test_bf16_logprobs_agree_within_bf16_tolerance(qwen3_06b):
    prompts = mixed_prompts()
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=10)
    a, _ = generate(qwen3_06b, prompts, params, dtype="bfloat16", attention_backend="triton")
    b, _ = generate(
        qwen3_06b,
        prompts,
        params,
        dtype="bfloat16",
        attention_backend="torch_ref",
        enforce_eager=True,
    )
    for x, y in zip(a, b):
        tx, ty = x["top_logprobs"][0], y["top_logprobs"][0]
        common = set(tx) & set(ty)
        assert len(common) >= 5
        assert max(abs(tx[i] - ty[i]) for i in common) < 0.1


def test_seeded_sampling_repeats_on_gpu(qwen3_06b):
    prompts = mixed_prompts()[:4]
    params = [
        SamplingParams(temperature=0.8, top_p=0.9, seed=i, max_tokens=16, ignore_eos=True)
        for i in range(4)
    ]
    a, _ = generate(qwen3_06b, prompts, params, dtype="bfloat16")
    b, _ = generate(qwen3_06b, prompts[:1], params[:1], dtype="bfloat16")
    assert a[0]["token_ids"] == b[0]["token_ids"]


def test_overlap_on_equals_off_with_triton_and_graphs(qwen3_06b):
    """Overlap scheduling on the GPU (the runner fills the pending tokens on the device, inside
    CUDA-graph steps too): the same greedy tokens and finishes as one step at a time, with stop
    tokens, max_tokens, preemption (a 12-block cache) and prefix hits."""
    prompts = mixed_prompts()
    lengths = (1, 5, 24, 40, 17, 3, 30, 24, 24)
    free = [SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in lengths]
    ref, _ = generate(qwen3_06b, prompts, free, dtype="float32", overlap_scheduling=False)
    stops = sorted({t for o in ref[2:5] for t in o["token_ids"][4:7]})
    params = [
        SamplingParams(temperature=0, max_tokens=m, ignore_eos=True, stop_token_ids=stops)
        if i % 2
        else sp
        for i, (m, sp) in enumerate(zip(lengths, free))
    ]
    # a small budget and few sequences admit the shared prompts apart (prefix hits); a 12-block
    # cache preempts
    chunks = dict(max_num_batched_tokens=512, max_num_seqs=4)
    for config in (chunks, dict(num_kvcache_blocks=12, max_num_seqs=8)):
        results = []
        for overlap in (False, True):
            with LLM(
                qwen3_06b,
                max_model_len=2048,
                dtype="float32",
                overlap_scheduling=overlap,
                gpu_memory_utilization=0.5,
                **config,
            ) as llm:
                records = []
                llm.subscribe(records.append)
                outs = llm.generate(prompts, params, use_tqdm=False)
                assert llm.check_integrity() == [] and llm.step_loop.in_flight is None
                results.append(
                    ([(o["token_ids"], o.outputs[0].finish_reason) for o in outs], records)
                )
        (off, _), (on, rec_on) = results
        assert on == off
        assert any(reason == "stop" for _, reason in on)
        if config is chunks:
            assert sum(r.prefix_hit_tokens for r in rec_on) > 0
        else:
            assert any(r.preempted_ids for r in rec_on)


def test_elementwise_kernels_equal_torch_and_torch_compile(qwen3_06b):
    """The norms, rotary and SiLU-and-mul three ways (Config.elementwise, layers/fusion.py): the
    hand-written Triton kernels, torch.compile of the torch code, the torch code itself; with
    CUDA graphs, in float32: the same greedy tokens, log-probabilities to rounding."""
    prompts = mixed_prompts()[:6]
    runs = {
        mode: generate(qwen3_06b, prompts, GREEDY, dtype="float32", elementwise=mode)[0]
        for mode in ("torch", "triton", "compile")
    }
    for mode in ("triton", "compile"):
        assert [o["token_ids"] for o in runs[mode]] == [o["token_ids"] for o in runs["torch"]]
        for a, b in zip(runs[mode], runs["torch"]):
            torch.testing.assert_close(
                torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=2e-3, rtol=0
            )
