"""The watch's status line (widgets/controls/source_status.py): the subscriber's state in words,
a colour per severity, each problem after the state, and a hint when nothing answers."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from nanovllm.bridge.state import SubscriberState
from widgets.controls.source_status import AMBER, GREEN, HINT_AFTER, RED, describe

NOW = 1000.0


def line(**state):
    s = replace(SubscriberState("tcp://10.0.0.5:5557", None, since=NOW - 1), **state)
    return describe(SimpleNamespace(state=s, name="vLLM KV events"), now=NOW)


def test_connecting_says_what_to_check_once_nothing_answers():
    early = line()
    assert early.words == ("connecting",) and AMBER in early.html
    assert "waiting for the publisher" in early.text
    late = line(since=NOW - HINT_AFTER - 1)
    assert "nothing has answered for 3 s" in late.text
    assert "--kv-events-config" in late.text and "tcp://10.0.0.5:5557 its endpoint" in late.text


def test_connected_disconnected_and_closed():
    ok = line(status="connected", batches=12, events=40, last_ts=NOW - 3)
    assert ok.words == ("connected",) and GREEN in ok.html
    assert ok.text == "● connected to tcp://10.0.0.5:5557: 12 batches, 40 events, the last 3 s ago"
    gone = line(status="disconnected", since=NOW - 4)
    assert gone.words == ("disconnected",) and RED in gone.html
    assert "the publisher went away 4 s ago" in gone.text and "as last seen" in gone.text
    assert line(status="closed").words == ("closed",)


def test_every_problem_is_named_after_the_state():
    s = line(
        status="connected",
        batches=1,
        gaps=2,
        replayed=5,
        missed=3,
        dropped=7,
        dropped_events=40,
        malformed=4,
        bad_events=1,
        last_error="not msgpack",
        restarts=1,
    )
    assert s.words == ("connected", "gap", "dropped", "malformed", "restarted")
    text = s.text
    assert "gap: 2 jumps in seq, 5 batches replayed, 3 missed for good (the tree may lack" in text
    assert "dropped: 7 batches (40 events): this notebook fell behind" in text
    assert "malformed: 4 frames, 1 event unreadable (last: not msgpack)" in text
    assert "restarted: the publisher restarted 1 time" in text
    replayed_only = line(status="connected", gaps=1, replayed=2)
    assert AMBER in replayed_only.html and RED not in replayed_only.html  # nothing lost
    assert (
        "1 batch" not in replayed_only.text and "2 batches replayed, 0 missed" in replayed_only.text
    )


def test_a_source_without_a_subscriber_says_so():
    s = describe(SimpleNamespace(state=None, name="our engine"))
    assert s.words == ("watching",) and "our engine in this kernel" in s.text
