"""`python -m nanovllm.testing`: build the teaching model if it is not cached, and say how long."""

from __future__ import annotations

import time

from nanovllm.testing.checkpoint import cache_root
from nanovllm.testing.teaching import Recipe, teaching_model_path


def main() -> None:
    recipe = Recipe()
    cached = (cache_root() / f"teaching-{recipe.key()}" / "config.json").is_file()
    t0 = time.perf_counter()
    path = teaching_model_path(recipe)
    if cached:
        print(f"teaching model: {path} (cached)")
    else:
        print(f"teaching model built in {time.perf_counter() - t0:.1f} s: {path}", flush=True)


if __name__ == "__main__":
    main()
