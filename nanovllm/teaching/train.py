"""Training the teaching model: tokenizer, packed rows, the training loop, the written checkpoint.

Contract:
- `make_teaching_model(path, recipe)` generates the corpus (`corpus.corpus_lines`), trains the
  word-level tokenizer and a Qwen3 with torch on it, and writes a real Hugging Face checkpoint into
  `path`: config.json, generation_config.json, model.safetensors (in `recipe.dtype`), tokenizer.json
  and tokenizer_config.json (the chat template inline), and the record `teaching.json` (the
  recipe, the corpus's sha256, the training time and loss, the library versions, each file's
  sha256; `record.py` adds the held-out score). It takes minutes on two CPU cores, with a
  progress bar; `python -m nanovllm.teaching train` runs it.
- Reproducible: the same recipe and versions on the same kind of machine give the same weights
  (seeded init, a fixed data order, `torch.set_num_threads(recipe.threads)` while training).
- The tokenizer is word-level: every word, number and punctuation mark of the corpus is one token,
  so a number is never split and a continuation is checked token by token. Unknown words become
  `<|unk|>`; the model's text has no newlines (whitespace is a separator, not a token).

Nothing here is imported by the engine, nor by `teaching_model_path()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

from nanovllm.teaching import corpus, record
from nanovllm.teaching.hf_format import (
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    write_model,
    write_tokenizer,
)
from nanovllm.teaching.recipe import Recipe

UNK = "<|unk|>"
SPECIALS = (ENDOFTEXT, IM_START, IM_END, UNK)  # ids 0, 1, 2, 3


def make_teaching_model(path, recipe: Recipe | None = None, *, progress: bool = True) -> Path:
    """Generate the corpus, train the tokenizer and the model, write the checkpoint into `path`."""
    import tokenizers
    import torch
    import transformers

    recipe = recipe or Recipe()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lines = lines_for(recipe)
    tokenizer = build_tokenizer(lines, model_max_length=recipe.config["max_position_embeddings"])
    rows = pack_rows(tokenizer, lines, recipe)
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


def lines_for(recipe: Recipe) -> list[str]:
    """Enough corpus lines to fill `steps * batch_size` rows (a superset of the lines trained on):
    a line averages well over 24 tokens, and the line that overflows a row is cut there."""
    per_row = recipe.seq_len // 24 + 1
    return corpus.corpus_lines(recipe.steps * recipe.batch_size * per_row, recipe.seed, recipe.mix)


def corpus_sha256(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build_tokenizer(lines: list[str], model_max_length: int):
    """A word-level tokenizer trained on `lines` plus the generator's vocabulary.

    Pre-tokenization splits on whitespace and isolates punctuation ("blocks." -> "blocks", ".");
    the WordPiece decoder joins with spaces and glues punctuation back on ("blocks.").
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIALS), show_progress=False)
    plain = (_strip_specials(line) for line in lines)  # specials are added, not learned
    tok.train_from_iterator([*plain, corpus.vocabulary()], trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )


def _strip_specials(line: str) -> str:
    for special in SPECIALS:
        line = line.replace(special, " ")
    return line


def pack_rows(tokenizer, lines: list[str], recipe: Recipe):
    """A [steps, batch_size, seq_len] tensor of token ids: whole lines, each followed by EOS.

    Every row starts at the start of a line (a prompt starts at position 0 too); the line that
    overflows a row is cut there, and the next row starts with the next line.
    """
    import torch

    eos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    n_rows = recipe.steps * recipe.batch_size
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    rows, row = [], []
    for line in ids:
        row += [*line, eos]
        if len(row) >= recipe.seq_len:
            rows.append(row[: recipe.seq_len])
            row = []
            if len(rows) == n_rows:
                break
    if len(rows) < n_rows:
        raise ValueError(f"the corpus filled {len(rows)} rows of {n_rows}; generate more lines")
    return torch.tensor(rows).view(recipe.steps, recipe.batch_size, recipe.seq_len)


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
