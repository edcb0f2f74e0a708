"""vLLM's KV-event wire format: msgpack payloads in both of its encodings, and the ZMQ frames.

One publication is a ZMQ multipart message ``[topic, seq, payload]``: ``seq`` an 8-byte big-endian
counter from 0, ``payload`` a msgpack ``EventBatch`` array ``[ts, events, data_parallel_rank]``.
An event is encoded one of two ways (vLLM PR #42892 changed the first to the second)::

    positional (array):  ["BlockStored", block_hashes, parent_block_hash, token_ids, ...]
    tagged map:          {"type": "BlockStored", "block_hashes": [...], "token_ids": [...], ...}

``decode_batch`` takes either, event by event (a batch may mix them), and ignores fields it does
not know, so a newer vLLM's added fields pass. Block hashes arrive as ints (vLLM's default,
``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``) or as bytes (a sha256 digest), which become ints.
``encode_batch`` writes vLLM's current schema (tagged maps) or, for older readers, the arrays.
msgspec is imported on first use: it is in the ``bridge`` extra, not a core dependency.
"""

from __future__ import annotations

from typing import Any

from nanovllm.engine.observe.cache_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    CacheEvent,
    EventBatch,
)
from nanovllm.errors import NanoVLLMError

ENCODINGS = ("map", "array")
END_OF_REPLAY = (-1).to_bytes(8, "big", signed=True)  # the seq frame that ends a replay

# field order of the positional encoding (vLLM's struct field order; trailing defaults omitted)
STORED_FIELDS = (
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
    "extra_keys",
    "group_idx",
    "kv_cache_spec_kind",
    "kv_cache_spec_sliding_window",
    "locality",
    "ownership",
    "session_id",
)
REMOVED_FIELDS = ("block_hashes", "medium", "group_idx", "locality", "ownership")
_FIELDS = {"BlockStored": STORED_FIELDS, "BlockRemoved": REMOVED_FIELDS, "AllBlocksCleared": ()}


class WireError(NanoVLLMError, ValueError):
    """A frame or payload that is not a KV-event publication (what was wrong is in the text)."""


def _msgspec():
    try:
        import msgspec
    except ImportError as e:
        raise ImportError(
            "the vLLM bridge needs msgspec and pyzmq: pip install 'nano-vllm-workbench[bridge]'"
        ) from e
    return msgspec


# ---- decoding ------------------------------------------------------------------------------------
def decode_batch(payload: bytes) -> tuple[EventBatch, int]:
    """The batch in ``payload``, and how many of its events were malformed (skipped). Raises
    ``WireError`` when the payload itself is not an EventBatch."""
    msgspec = _msgspec()
    try:
        raw = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError as e:
        raise WireError(f"payload of {len(payload)} bytes is not msgpack: {e}") from None
    if isinstance(raw, dict):  # not what vLLM sends today, but a map is unambiguous
        raw = [raw.get("ts"), raw.get("events"), raw.get("data_parallel_rank")]
    if not isinstance(raw, list) or not 2 <= len(raw) <= 3:
        raise WireError(f"an EventBatch is [ts, events, data_parallel_rank]; got {_show(raw)}")
    ts, events, rank = (raw + [None])[:3]
    if not isinstance(ts, int | float) or not isinstance(events, list):
        raise WireError(f"an EventBatch is [ts: float, events: list, ...]; got {_show(raw)}")
    if rank is not None and not isinstance(rank, int):
        raise WireError(f"data_parallel_rank must be an int or nil; got {_show(rank)}")
    out, bad = [], 0
    for e in events:
        try:
            out.append(decode_event(e))
        except WireError:
            bad += 1
    return EventBatch(float(ts), tuple(out), rank), bad


def decode_event(raw: Any) -> CacheEvent:
    if isinstance(raw, list) and raw and isinstance(raw[0], str):
        tag, names = raw[0], _FIELDS.get(raw[0])
        if names is None:
            raise WireError(f"unknown event type {tag!r}")
        f = dict(zip(names, raw[1:]))
    elif isinstance(raw, dict) and isinstance(raw.get("type"), str):
        tag, f = raw["type"], raw
    else:
        raise WireError(f"an event is a tagged array or map; got {_show(raw)}")
    if tag == "BlockStored":
        bs = f.get("block_size")
        if not isinstance(bs, int) or isinstance(bs, bool) or bs <= 0:
            raise WireError(f"BlockStored.block_size must be a positive int; got {_show(bs)}")
        parent = f.get("parent_block_hash")
        return BlockStored(
            _hashes(f),
            None if parent is None else _hash(parent),
            _ints(f.get("token_ids"), "token_ids"),
            bs,
            _opt(f.get("medium"), str),
            _opt(f.get("group_idx"), int),
            _opt(f.get("lora_name"), str),
        )
    if tag == "BlockRemoved":
        return BlockRemoved(_hashes(f), _opt(f.get("medium"), str), _opt(f.get("group_idx"), int))
    if tag == "AllBlocksCleared":
        return AllBlocksCleared()
    raise WireError(f"unknown event type {tag!r}")


def _hash(h: Any) -> int:
    if isinstance(h, bytes):
        return int.from_bytes(h, "big")
    if isinstance(h, int) and not isinstance(h, bool) and h >= -(2**63):
        return h & (2**64 - 1)  # an i64 on the wire is the same 64-bit hash as a u64
    raise WireError(f"a block hash is an int or bytes; got {_show(h)}")


def _hashes(f: dict) -> tuple[int, ...]:
    hs = f.get("block_hashes")
    if not isinstance(hs, list) or not hs:
        raise WireError(f"block_hashes must be a non-empty list; got {_show(hs)}")
    return tuple(_hash(h) for h in hs)


def _ints(xs: Any, name: str) -> tuple[int, ...]:
    if not isinstance(xs, list) or not all(isinstance(x, int) for x in xs):
        raise WireError(f"{name} must be a list of ints; got {_show(xs)}")
    return tuple(xs)


def _opt(x: Any, kind: type) -> Any:
    return x if isinstance(x, kind) else None


def _show(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 80 else s[:77] + "..."


# ---- encoding ------------------------------------------------------------------------------------
def encode_batch(batch: EventBatch, encoding: str = "map") -> bytes:
    """``batch`` as vLLM publishes it: ``encoding="map"`` (vLLM's schema since PR #42892) or
    ``"array"`` (positional, for readers of older vLLM)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding={encoding!r}; pass one of {ENCODINGS}")
    events = [_encode_event(e, encoding) for e in batch.events]
    rank = batch.data_parallel_rank
    raw = [batch.ts, events] + ([] if rank is None else [rank])
    return _msgspec().msgpack.encode(raw)


def _encode_event(e: CacheEvent, encoding: str) -> Any:
    if isinstance(e, BlockStored):
        tag = "BlockStored"
        f = {
            "block_hashes": list(e.block_hashes),
            "parent_block_hash": e.parent_block_hash,
            "token_ids": list(e.token_ids),
            "block_size": e.block_size,
            "lora_id": None,
            "medium": e.medium,
            "lora_name": e.lora_name,
            "extra_keys": [None] * len(e.block_hashes),
            "group_idx": 0 if e.group_idx is None else e.group_idx,
            "kv_cache_spec_kind": "full_attention",
        }
    elif isinstance(e, BlockRemoved):
        tag = "BlockRemoved"
        f = {"block_hashes": list(e.block_hashes), "medium": e.medium}
        f["group_idx"] = 0 if e.group_idx is None else e.group_idx
    else:
        tag, f = "AllBlocksCleared", {}
    if encoding == "map":
        return {"type": tag, **f}
    return [tag, *(f[name] for name in _FIELDS[tag] if name in f)]


# ---- frames --------------------------------------------------------------------------------------
def pack_frames(topic: bytes, seq: int, payload: bytes) -> list[bytes]:
    return [topic, seq.to_bytes(8, "big"), payload]


def unpack_frames(frames: list[bytes]) -> tuple[bytes, int, bytes]:
    """(topic, seq, payload) of a publication; ``WireError`` for anything else."""
    if len(frames) != 3:
        raise WireError(f"a publication is 3 frames [topic, seq, payload]; got {len(frames)}")
    topic, seq, payload = frames
    if len(seq) != 8:
        raise WireError(f"the seq frame is 8 bytes (big-endian); got {len(seq)}")
    return topic, int.from_bytes(seq, "big"), payload
