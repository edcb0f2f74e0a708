"""`python -m nanovllm.teaching [score [DIR] | train [--out DIR]]`: the teaching model's commands.

    python -m nanovllm.teaching                the shipped model: where, its files, its record
    python -m nanovllm.teaching score [DIR]    the held-out score of DIR (default: the shipped
                                               model), per kind, and the prompts it gets wrong
    python -m nanovllm.teaching train [--out DIR]
                                               retrain from `Recipe()` into DIR (default
                                               ./teaching-model, with a progress bar), then print
                                               its held-out score next to the shipped model's and
                                               whether the weights are bit-identical

To ship retrained weights: `train --out nanovllm/teaching/model` (a test then checks the files
against the new record), and update the figures in README.md's "The teaching model".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nanovllm.teaching import MODEL_DIR, record
from nanovllm.teaching.evaluate import evaluate
from nanovllm.teaching.held_out import CHECKED_WORDS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nanovllm.teaching", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    score = sub.add_parser("score", help="the held-out score of a checkpoint")
    score.add_argument("dir", nargs="?", type=Path, default=MODEL_DIR)
    train = sub.add_parser("train", help="retrain from the recipe and compare with the shipped")
    train.add_argument("--out", type=Path, default=Path("teaching-model"))
    args = parser.parse_args(argv)
    if args.command == "score":
        _score(args.dir)
    elif args.command == "train":
        _train(args.out)
    else:
        _show()


def _show() -> None:
    info = record.read(MODEL_DIR)
    print(f"teaching model: {MODEL_DIR}")
    for name, file in info["files"].items():
        print(f"  {name:24} {file['bytes']:>9,} bytes  sha256 {file['sha256'][:16]}")
    held = info["held_out"]
    print(
        f"  {info['parameters']:,} parameters ({info['recipe']['dtype']}), trained in "
        f"{info['train_seconds']} s; held-out: {held['correct']}/{held['cases']} "
        f"({held['correct'] / held['cases']:.1%}) {held['by_kind']}"
    )


def _score(path: Path) -> None:
    result = evaluate(path)
    print(f"{path}: held-out, first {CHECKED_WORDS} words, greedy: {result.line()}")
    for kind, prompt, expected, got in result.wrong:
        print(f"  {kind:9} {prompt!r} -> {got!r} (expected {expected!r})")


def _train(out: Path) -> None:
    from nanovllm.teaching.train import make_teaching_model

    shipped = evaluate(MODEL_DIR)  # first: `out` may be the shipped directory itself
    shipped_weights = record.read(MODEL_DIR)["files"]["model.safetensors"]["sha256"]
    t0 = time.perf_counter()
    make_teaching_model(out)
    seconds = time.perf_counter() - t0
    new = evaluate(out)
    record.add_score(out, new.summary())
    same = record.read(out)["files"]["model.safetensors"]["sha256"] == shipped_weights
    print(f"trained in {seconds:.0f} s into {out}")
    print(f"held-out, first {CHECKED_WORDS} words, greedy:")
    print(f"  new:     {new.line()}")
    print(f"  shipped: {shipped.line()}")
    print(f"weights: {'bit-identical to' if same else 'differ from'} the shipped model's")


if __name__ == "__main__":
    main()
