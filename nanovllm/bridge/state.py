"""What a KvEventSubscriber has seen: its status and counts, as one frozen value (and the marker
it queues when the publisher restarted). Read by the sources' state tables and the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Restart:
    """Queued when the publisher's seq went back: it restarted, with an empty cache."""

    seq: int
    ts: float


@dataclass(frozen=True)
class SubscriberState:
    endpoint: str
    replay_endpoint: str | None
    status: str = "connecting"  # connecting | connected | disconnected | closed
    since: float = 0.0  # time.time() of the last status change
    batches: int = 0  # batches queued (live and replayed)
    events: int = 0
    malformed: int = 0  # frames or payloads that are not a publication
    bad_events: int = 0  # events skipped inside batches that decoded
    last_error: str | None = None
    gaps: int = 0  # jumps in seq seen (a late join included)
    replayed: int = 0  # batches recovered from the replay endpoint
    missed: int = 0  # batches lost for good (not replayable)
    restarts: int = 0
    duplicates: int = 0  # live batches a replay had already given (skipped)
    dropped: int = 0  # batches dropped because the queue was full
    dropped_events: int = 0
    last_seq: int | None = None
    last_ts: float | None = None  # the last batch's own timestamp

    @property
    def complete(self) -> bool:
        """Whether every batch since the (last) start reached the queue."""
        return not (self.missed or self.dropped)

    def summary(self) -> str:
        lost = []
        if self.missed:
            lost.append(f"{self.missed} batches missed (not replayable)")
        if self.dropped:
            lost.append(
                f"{self.dropped} batches ({self.dropped_events} events) dropped: "
                "the consumer was too slow"
            )
        if self.malformed or self.bad_events:
            lost.append(f"{self.malformed} malformed frames, {self.bad_events} bad events")
        head = (
            f"{self.status} to {self.endpoint}"
            if self.status != "connecting"
            else (f"connecting to {self.endpoint} (no publisher has answered)")
        )
        return "; ".join([head, f"{self.batches} batches, {self.events} events", *lost])
