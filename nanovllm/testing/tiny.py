"""A tiny random-weight Qwen3 checkpoint in Hugging Face format, built offline in about a second.

Contract:
- `make_tiny_model(path)` writes config.json, model.safetensors, generation_config.json and tokenizer
  files that `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained(path)` load with no missing or
  unexpected keys. The same seed and overrides give byte-identical files.
- The weights are re-drawn with a large std (not HF's 0.02), so logits are well spread and greedy
  argmax does not flip between implementations on rounding noise.
- The tokenizer is a byte-level BPE (fixed size `TOKENIZER_VOCAB_SIZE`) trained on the corpus below;
  any ASCII text round-trips. The model's vocab_size may be larger (padded rows), as in real Qwen3.
- `tiny_model_path(**overrides)` builds once into a cache dir and reuses it (through
  `checkpoint.build_cached`: the directory appears atomically, so concurrent test processes never
  see half a checkpoint).

Nothing here is imported by the engine; tests and notebooks use it when `NANOVLLM_MODEL` is unset.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nanovllm.testing import checkpoint
from nanovllm.testing.checkpoint import build_cached, write_model, write_tokenizer

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # trained first, so their ids are 0, 1, 2
TOKENIZER_VOCAB_SIZE = 448

TINY_CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "max_position_embeddings": 2048,
    "rope_theta": 1e6,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "bos_token_id": SPECIAL_TOKENS.index(ENDOFTEXT),
    "eos_token_id": SPECIAL_TOKENS.index(ENDOFTEXT),
    "torch_dtype": "float32",
}

WEIGHT_STD = 0.2  # linear and embedding weights; logits then have std ~1.5 over the vocab
NORM_STD = 0.1  # norm weights are 1 + NORM_STD * randn, so q_norm / k_norm are not the identity

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CORPUS = """\
An inference engine for large language models turns a batch of prompts into generated text as fast
as the hardware allows. Each request starts with a prefill: the engine runs the whole prompt through
the model in one forward pass and stores the keys and values of every attention layer in the KV cache.
Then the request decodes, one token per step: the model reads the cached keys and values, computes
attention for the newest token only, samples the next token, and appends its key and value to the cache.

The KV cache is the largest consumer of memory. A naive engine reserves one contiguous region per
request, sized for the longest possible output, and wastes most of it. A paged engine splits the cache
into fixed-size blocks, for example sixteen or two hundred and fifty six tokens each, and gives every
sequence a block table: a list of block ids that maps the logical positions of its tokens to physical
slots in memory. Blocks are allocated when a sequence needs room and freed when it finishes, so memory
fragmentation stays small and many more sequences fit on the same device.

Prefix caching builds on paged blocks. When a block is full, the engine hashes its tokens together with
the hash of the previous block. If a new request starts with the same system prompt or the same few-shot
examples, its first blocks have the same hashes, and the engine reuses the cached blocks instead of
computing them again. A reference count tells how many sequences share a block; a block whose count
drops to zero stays in the cache until the memory is needed, and the least recently used one is evicted first.

The scheduler decides, at every step, which sequences run. Continuous batching means that new requests
join the running batch as soon as there is room, and finished requests leave it at once, instead of
waiting for the slowest member of a static batch. Chunked prefill splits a long prompt into pieces so
that decoding sequences are not stalled behind it. When the cache runs out of free blocks, the scheduler
preempts a running sequence: it frees the blocks of that sequence and puts it back in the waiting queue,
to be recomputed later. Preemption keeps the engine alive under pressure, at the price of extra work.

The model runner prepares the inputs of one step: the token ids, their positions, the slot mapping that
says where each new key and value is stored, and the block tables and lengths that the attention kernel
reads. On a GPU, the decode step is small and launch-bound, so the engine captures it once in a CUDA graph
and replays the graph with new inputs. Tensor parallelism splits every weight matrix across several
devices; each device computes part of the result and an all-reduce combines them.

Sampling turns the logits of the last position into a token. Greedy decoding takes the largest logit.
Temperature divides the logits before the softmax; top-k and top-p keep only the most likely tokens.
The engine stops a sequence when it emits the end-of-text token, reaches its maximum number of new
tokens, or fills the context window. Throughput is measured in tokens per second; latency is the time to
the first token and the time between tokens. A good engine keeps the device busy, keeps the cache full of
useful blocks, and never lets one long request starve the others.

Questions to try: What is a block table? How does prefix caching save work? Why does the scheduler
preempt? What does a CUDA graph capture? How many tokens fit in 1024 blocks of 16? (Answer: 16384.)
"""


def make_tiny_model(path: str | os.PathLike, *, seed: int = 0, **config_overrides: Any) -> Path:
    """Write a random-weight Qwen3 checkpoint (config, safetensors, tokenizer) into `path`.

    `config_overrides` replace keys of `TINY_CONFIG`; unknown keys pass through to the HF config.
    `torch_dtype` (or `dtype`) also sets the dtype of the saved weights.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(
        model_max_length=_merged(config_overrides)["max_position_embeddings"]
    )
    config, dtype = _build_config(config_overrides, tokenizer_vocab=len(tokenizer))
    _save_model(config, dtype, path, seed, n_tokens=len(tokenizer))
    write_tokenizer(tokenizer, path, CHAT_TEMPLATE)
    return path


def tiny_model_path(*, seed: int = 0, **config_overrides: Any) -> Path:
    """Build the tiny model once per (seed, overrides, builder version) and return the cached path.

    The cache root is `$NANOVLLM_CACHE` if set, else `~/.cache/nanovllm`.
    """
    key = _cache_key(seed, config_overrides)
    return build_cached(
        f"tiny-{key}", lambda tmp: make_tiny_model(tmp, seed=seed, **config_overrides)
    )


def _merged(overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = {**TINY_CONFIG, **overrides}
    if "dtype" in overrides:  # transformers>=5 spelling; keep one key
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def _cache_key(seed: int, overrides: dict[str, Any]) -> str:
    import transformers

    # editing this builder or the writers invalidates the cache
    source = Path(__file__).read_bytes() + Path(checkpoint.__file__).read_bytes()
    blob = json.dumps([seed, overrides, transformers.__version__], sort_keys=True, default=repr)
    return hashlib.sha256(source + blob.encode()).hexdigest()[:16]


def _build_config(overrides: dict[str, Any], tokenizer_vocab: int):
    import transformers
    from transformers import Qwen3Config

    cfg = _merged(overrides)
    if cfg["vocab_size"] < tokenizer_vocab:
        raise ValueError(
            f"vocab_size={cfg['vocab_size']} is smaller than the tiny tokenizer's vocabulary of "
            f"{tokenizer_vocab} tokens; pass vocab_size>={tokenizer_vocab}"
        )
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if heads % kv_heads:
        raise ValueError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}; "
            f"pass a num_key_value_heads that divides {heads}"
        )
    dtype = cfg.pop("torch_dtype")
    cfg.setdefault("architectures", ["Qwen3ForCausalLM"])
    cfg.setdefault("max_window_layers", cfg["num_hidden_layers"])  # as in released Qwen3 configs
    cfg.setdefault("initializer_range", WEIGHT_STD)  # what _reinit_ draws with, not HF's 0.02
    # transformers 5 renamed torch_dtype to dtype and warns on the old name
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    config = Qwen3Config(**{dtype_key: dtype}, **cfg)
    return config, str(dtype).removeprefix("torch.")


def _save_model(config, dtype: str, path: Path, seed: int, n_tokens: int) -> None:
    import torch
    from transformers import Qwen3ForCausalLM

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
        _reinit_(model, torch.Generator().manual_seed(seed), n_tokens)
    write_model(model, config, dtype, path)


def _reinit_(model, gen, n_tokens: int) -> None:
    """Redraw every parameter: N(0, WEIGHT_STD) for matrices, 1 + N(0, NORM_STD) for norms.

    Names are visited in sorted order so the draw does not depend on module registration order;
    tied parameters appear once in `named_parameters()`, so tying survives. Embedding and lm_head
    rows past the tokenizer (ids >= n_tokens) are zero: their logit is 0, far below the usual
    maximum, so greedy output stays decodable (sampling still reaches them rarely, as it could
    with a real model's padded vocab).
    """
    import torch

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * noise)
            elif name.endswith(".bias"):
                p.copy_(NORM_STD * noise)
            else:
                p.copy_(WEIGHT_STD * noise)
        model.get_input_embeddings().weight[n_tokens:] = 0.0
        model.get_output_embeddings().weight[n_tokens:] = 0.0


def _build_tokenizer(model_max_length: int):
    """Train the byte-level BPE on CORPUS (deterministic: ties break on the pair itself)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    assert tok.get_vocab_size() == TOKENIZER_VOCAB_SIZE, tok.get_vocab_size()
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
