"""What the engine shows: ``Recorder`` (StepRecords and events as DataFrames), ``EngineSnapshot``
(blocks and sequences right now), ``MetricsCollector`` (``get_metrics()``), the HTML tables
notebooks display, and the data the workbench's views draw from a snapshot: ``block_table`` (one
request's logical -> physical blocks), ``prefix_tree`` (the cached hash chains as a tree) and
``request_rows`` (one row per request). Observers only read StepRecords and snapshots; none of
them changes the engine (what-if replay drives engines, so it lives above: ``nanovllm/replay.py``).

The observation contract's types are importable from here, so a reader of the engine (the
workbench) needs ``nanovllm``'s public API and this package only: ``StepRecord``, ``StepTiming``,
``ScheduledEntry``, ``SequenceEvent`` (defined in ``core/events.py``), ``Phase``,
``SequenceStatus`` and ``is_pending`` (a token id still being sampled).
"""

from nanovllm.engine.core.batch import Phase
from nanovllm.engine.core.events import ScheduledEntry, SequenceEvent, StepRecord, StepTiming
from nanovllm.engine.core.sequence import SequenceStatus, is_pending

__all__ = [
    "Phase",
    "ScheduledEntry",
    "SequenceEvent",
    "SequenceStatus",
    "StepRecord",
    "StepTiming",
    "is_pending",
]
