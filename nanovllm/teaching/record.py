"""The record a teaching checkpoint carries: `teaching.json`, next to the files it vouches for.

Contract:
- `write(path, info)` writes `info` plus `files`: the sha256 and size of every other file in
  `path` (config.json, model.safetensors, the tokenizer files...). `read(path)` returns it.
- `checksums(path)` recomputes those figures, so `checksums(p) == read(p)["files"]` says the files
  are the ones recorded (a test checks the shipped copy).
- `add_score(path, score)` stores a held-out score (`held_out.Score.summary()`) under `held_out`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

RECORD = "teaching.json"


def checksums(path: Path) -> dict[str, dict[str, Any]]:
    files = sorted(f for f in Path(path).iterdir() if f.is_file() and f.name != RECORD)
    return {
        f.name: dict(sha256=hashlib.sha256(f.read_bytes()).hexdigest(), bytes=f.stat().st_size)
        for f in files
    }


def read(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / RECORD).read_text())


def write(path: Path, info: dict[str, Any]) -> None:
    data = {**info, "files": checksums(path)}
    file = Path(path) / RECORD
    file.write_text(json.dumps(data, indent=2) + "\n")
    file.chmod(0o644)


def add_score(path: Path, score: dict[str, Any]) -> None:
    write(path, {**read(path), "held_out": score})
