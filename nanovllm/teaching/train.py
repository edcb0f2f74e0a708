"""Training the teaching model: packed rows, the training loop, the written checkpoint.

Contract:
- `make_teaching_model(path, recipe)` packs corpus lines (`corpus.corpus_stream`) into rows of
  token ids (`tokenizer.py`), trains a Qwen3 with torch on them, and writes a real Hugging Face
  checkpoint into `path`: config.json, generation_config.json, model.safetensors (in
  `recipe.dtype`), tokenizer.json and tokenizer_config.json (the chat template inline), and the
  record `teaching.json` (the recipe, the corpus's sha256, the training time and loss, the library
  versions, each file's sha256; `python -m nanovllm.teaching train` adds the held-out score). It
  takes minutes on one CPU core, with a progress bar.
- Reproducible: the same recipe and versions on the same kind of machine give the same weights
  (seeded init, a fixed data order, `torch.set_num_threads(recipe.threads)` while training).
- `training_lines(recipe)` returns exactly the corpus lines the recipe trains on, in order; the
  record's `corpus_sha256` hashes them.

Nothing here is imported by the engine, nor by `teaching_model_path()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import sys
import time
from pathlib import Path

from nanovllm.teaching import corpus, record
from nanovllm.teaching.hf_format import CHAT_TEMPLATE, ENDOFTEXT, write_model, write_tokenizer
from nanovllm.teaching.recipe import Recipe
from nanovllm.teaching.tokenizer import build_tokenizer


def make_teaching_model(path, recipe: Recipe | None = None, *, progress: bool = True) -> Path:
    """Generate the corpus, train the tokenizer and the model, write the checkpoint into `path`."""
    import tokenizers
    import torch
    import transformers

    recipe = recipe or Recipe()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tokenizer = build_tokenizer(recipe.config["max_position_embeddings"])
    rows, lines = pack(tokenizer, recipe)
    rows = torch.tensor(rows).view(recipe.steps, recipe.batch_size, recipe.seq_len)
    config = _hf_config(recipe, n_tokens=len(tokenizer))
    model, losses = train(config, rows, recipe, progress=progress)
    write_model(model, config, recipe.dtype, path)
    write_tokenizer(tokenizer, path, CHAT_TEMPLATE)
    info = dict(
        recipe=dataclasses.asdict(recipe),
        corpus_sha256=corpus_sha256(lines),
        train_seconds=round(time.perf_counter() - t0, 1),
        final_loss=round(sum(losses[-10:]) / len(losses[-10:]), 4),
        parameters=sum(p.numel() for p in model.parameters()),
        versions=dict(
            torch=torch.__version__,
            transformers=transformers.__version__,
            tokenizers=tokenizers.__version__,
        ),
    )
    record.write(path, info)
    return path


def corpus_sha256(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pack(tokenizer, recipe: Recipe) -> tuple[list[list[int]], list[str]]:
    """`steps * batch_size` rows of `seq_len` token ids, and the corpus lines they hold.

    Whole lines from `corpus.corpus_stream`, each followed by EOS. Every row starts at the start
    of a line (a prompt starts at position 0 too); the line that overflows a row is cut there, and
    the next row starts with the next line. The lines returned are exactly those trained on.
    """
    eos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    n_rows = recipe.steps * recipe.batch_size
    stream = corpus.corpus_stream(recipe.seed, recipe.mix)
    rows, row, lines = [], [], []
    encode = tokenizer.backend_tokenizer.encode_batch
    while len(rows) < n_rows:
        chunk = list(itertools.islice(stream, 4096))  # encoded a chunk at a time (fast)
        for line, encoding in zip(chunk, encode(chunk, add_special_tokens=False)):
            lines.append(line)
            row += [*encoding.ids, eos]
            if len(row) >= recipe.seq_len:
                rows.append(row[: recipe.seq_len])
                row = []
                if len(rows) == n_rows:
                    break
    return rows, lines


def training_lines(recipe: Recipe) -> list[str]:
    """The corpus lines `recipe` trains on, in order (the held-out tests check them)."""
    return pack(build_tokenizer(recipe.config["max_position_embeddings"]), recipe)[1]


def _hf_config(recipe: Recipe, n_tokens: int):
    import transformers
    from transformers import Qwen3Config

    cfg = dict(recipe.config)
    cfg.setdefault("vocab_size", -(-n_tokens // 64) * 64)  # padded, as real checkpoints are
    cfg.update(architectures=["Qwen3ForCausalLM"], bos_token_id=0, eos_token_id=[0, 2])
    cfg.setdefault("max_window_layers", cfg["num_hidden_layers"])
    cfg.setdefault("hidden_act", "silu")
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return Qwen3Config(**{dtype_key: "float32"}, **cfg)


def train(config, rows, recipe: Recipe, *, progress: bool = True):
    """AdamW on next-token cross-entropy, one row batch per step; returns (model, losses)."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm
    from transformers import Qwen3ForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = Qwen3ForCausalLM(config).train()
            opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_scale(s, recipe))
            losses = []
            bar = tqdm(
                range(recipe.steps),
                desc="training the teaching model",
                disable=not progress,
                mininterval=0.5 if sys.stderr.isatty() else 15,  # a CI log gets a line per 15 s
            )
            for step in bar:
                x = rows[step]
                logits = model(input_ids=x, use_cache=False).logits
                loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), losses


def _lr_scale(step: int, recipe: Recipe) -> float:
    """Linear warm-up, then a cosine decay to a tenth."""
    if step < recipe.warmup:
        return (step + 1) / recipe.warmup
    done = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * done))
