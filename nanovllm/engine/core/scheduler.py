"""Scheduler: decides, each step, which sequences compute how many tokens. Pure Python, no torch.

One token budget (``max_num_batched_tokens``) per step is shared, in this order, by
  1. running sequences that decode (one token each),
  2. running sequences in the middle of a chunked prefill (or a recompute after preemption),
  3. waiting sequences, admitted first-come first-served while blocks, budget and
     ``max_num_seqs`` allow; a prompt longer than what is left of the budget is prefilled in chunks.
So prefill chunks and decodes share one batch. When a running sequence needs a block and none is
free, the most recently admitted unscheduled sequence is preempted: its blocks are freed and it goes
back to the front of the waiting queue, to be recomputed later (its cached prefix may survive).

A step passes through three calls, always in this order::

    schedule()                 -> ScheduledBatch: plain data the runner, observers and tests read
    advance(batch)             the batch is launched: its sequences count its tokens as computed,
                               and each sample row's token is a placeholder (sequence.py)
    postprocess(batch, out)    -> StepOutcome: the sampled tokens replace the placeholders, blocks
                               filled by the step enter the prefix cache, every finish is decided

Between ``advance`` and ``postprocess`` the next step may already be scheduled (overlap
scheduling): a sequence whose placeholder is its ``max_num_tokens``-th token is certain to finish,
so it is not scheduled again; one that stops on a token costs one wasted row in the next step, which
``postprocess`` ignores. Aborts and failures between steps go through ``abort()``. So every finish,
and every state change, is decided here and recorded as a ``SequenceEvent``; ``schedule`` hands the
events so far to its batch and ``postprocess`` the rest to its outcome. A sequence's first-token and
finish times are written in ``postprocess`` too (the first by core/sample_writer.py), once each.

Speculative decoding (a ``Drafter``, core/drafts.py): a decode row may carry draft tokens
(``batch.drafts``), which cost budget and lookahead slots; ``advance`` counts only the row's own
token as computed, and ``postprocess`` has core/sample_writer.py append the accepted drafts and the
target's next token one at a time, each checked for a finish here (``_finish_if_done``) as a plain
decode's token is. The engine finishes each step before scheduling the next when speculating, so a
draft is always proposed from known tokens.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from nanovllm.engine.core.batch import SamplerOutput, ScheduledBatch, StepOutcome
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.drafts import Drafter
from nanovllm.engine.core.sample_writer import write_samples
from nanovllm.engine.core.sequence import (
    FinishReason,
    Sequence,
    SequenceEvent,
    SequenceStatus,
    is_pending,
    pending_token,
)


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        max_model_len: int,
        eos_token_ids: tuple[int, ...] = (),
        stop_checker: Callable[[Sequence], bool] | None = None,
        drafter: Drafter | None = None,
    ):
        self.bm = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.eos_token_ids = frozenset(eos_token_ids)
        self.stop_checker = stop_checker  # stop strings: detokenizer.StopChecker, from the engine
        self.drafter = drafter  # speculative decoding: proposes each decode's draft (or None)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order: later ones are preempted first
        self._events: list[SequenceEvent] = []  # since the last take_events()
        self.num_steps = 0  # steps scheduled so far; the next step's index

    # ---- requests --------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        assert seq.status is SequenceStatus.WAITING
        seq.max_num_tokens = min(seq.max_num_tokens, self.max_model_len)
        self.waiting.append(seq)
        self._event(seq, None, SequenceStatus.WAITING, "added", self.num_steps, seq.num_tokens)

    def abort(self, seq: Sequence, reason: FinishReason = FinishReason.ABORT) -> None:
        """Finish an unfinished ``seq`` now (aborted by the user, or failed); frees its blocks."""
        self._unqueue(seq)
        self._finish(seq, reason, self.num_steps)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def can_schedule_ahead(self) -> bool:
        """Whether a step scheduled now, before the step in flight has finished, has a running
        sequence to compute: one that will still need a token after its pending one."""
        return any(len(s.token_ids) < s.max_num_tokens for s in self.running)

    def has_pending_events(self) -> bool:
        return bool(self._events)

    def idle_batch(self) -> ScheduledBatch:
        """An empty batch with the next step's index (and that index used up), holding the events
        so far: what a step that schedules nothing, on purpose, records."""
        batch = ScheduledBatch(step=self.num_steps, events=self.take_events())
        self.num_steps += 1
        return batch

    def take_events(self) -> tuple[SequenceEvent, ...]:
        """The state changes since the last call, oldest first (and forget them)."""
        events, self._events = tuple(self._events), []
        return events

    # ---- scheduling ------------------------------------------------------------------------------
    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch(step=self.num_steps)
        budget = self.max_num_batched_tokens
        # Running sequences: decodes first, then unfinished prefills; each keeps admission order.
        # One whose pending token is its last (max_num_tokens) is done: it is not scheduled.
        order = [
            s
            for s in self.running
            if len(s.token_ids) - s.num_computed_tokens == 1 and len(s.token_ids) < s.max_num_tokens
        ]
        if len(order) < len(self.running):
            order += [s for s in self.running if len(s.token_ids) - s.num_computed_tokens > 1]
        running, grow, drafter = SequenceStatus.RUNNING, self.bm.grow, self.drafter
        seqs, counts, starts, is_decode, reaches_end = (
            batch.seqs,
            batch.num_new_tokens,
            batch.starts,
            batch.is_decode,
            batch.reaches_end,
        )
        for seq in order:  # the hot loop of every decode step: kept flat on purpose
            if budget == 0:
                break
            if seq.status is not running:
                continue  # preempted earlier in this loop
            num_tokens, start = len(seq.token_ids), seq.num_computed_tokens
            left = num_tokens - start
            n = left if left < budget else budget
            draft = ()
            if drafter is not None and left == 1 and num_tokens > seq.num_prompt_tokens:
                draft = drafter.draft(seq, budget - 1)  # lookahead only where blocks are free
                if draft and not grow(seq, num_tokens + len(draft)):
                    draft = ()
            if draft or grow(seq, start + n) or self._make_room(seq, start + n, batch):
                if draft:
                    batch.drafts[len(seqs)] = draft
                    n += len(draft)
                seqs.append(seq)
                counts.append(n)
                starts.append(start)
                is_decode.append(left == 1 and num_tokens > seq.num_prompt_tokens)
                reaches_end.append(n >= left)
                budget -= n
        if not batch.preempted_ids:
            self._admit(batch, budget)
        batch.events = self.take_events()
        self.num_steps += 1
        return batch

    def _make_room(self, seq: Sequence, num_tokens: int, batch: ScheduledBatch) -> bool:
        """Grow ``seq`` to ``num_tokens``, preempting later unscheduled sequences as needed."""
        while not self.bm.grow(seq, num_tokens):
            victim = next(
                (s for s in reversed(self.running) if s is not seq and s not in batch.seqs), None
            )
            self._preempt(victim or seq, batch)
            if victim is None:
                return False
        return True

    def _preempt(self, seq: Sequence, batch: ScheduledBatch) -> None:
        self.running.remove(seq)
        self.bm.free_seq(seq)
        seq.status = SequenceStatus.PREEMPTED
        seq.num_preemptions += 1
        self.waiting.appendleft(seq)
        batch.preempted_ids.append(seq.seq_id)
        self._event(
            seq, SequenceStatus.RUNNING, SequenceStatus.PREEMPTED, "out of KV blocks", batch.step
        )

    def _admit(self, batch: ScheduledBatch, budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if seq.leader is not None and self._leader_computing_prompt(seq.leader):
                break  # n > 1: wait a step, then hit the leader's blocks in the prefix cache
            hits = self.bm.match_prefix(seq)
            num_cached = len(hits) * self.bm.block_size
            n = min(seq.num_tokens - num_cached, budget)
            if not self.bm.can_admit(hits, num_cached + n):
                break
            self.waiting.popleft()
            self.bm.admit(seq, hits, num_cached + n)
            before, seq.status = seq.status, SequenceStatus.RUNNING
            self.running.append(seq)
            reason = "resumed" if before is SequenceStatus.PREEMPTED else "scheduled"
            self._event(seq, before, SequenceStatus.RUNNING, reason, batch.step, seq.num_tokens)
            batch.add(seq, n, decode=False)
            batch.admitted_ids.append(seq.seq_id)
            batch.prefix_hit_tokens += num_cached
            budget -= n

    # ---- after the launch, after the forward --------------------------------------------------
    def advance(self, batch: ScheduledBatch) -> None:
        """The batch is launched: each scheduled, still running sequence counts its new tokens as
        computed, and sample row k appends ``pending_token(k)`` in place of the token it draws."""
        running = SequenceStatus.RUNNING
        k = 0
        for seq, n, end in zip(batch.seqs, batch.num_new_tokens, batch.reaches_end):
            if seq.status is running:  # (not one that finished while the step before ran)
                seq.num_computed_tokens += n
                if end:
                    seq.token_ids.append(pending_token(k))
            k += end
        for i, draft in batch.drafts.items():  # a draft is computed, but not yet accepted
            if batch.seqs[i].status is running:
                batch.seqs[i].num_computed_tokens -= len(draft)

    def postprocess(self, batch: ScheduledBatch, out: SamplerOutput | None) -> StepOutcome:
        """End the step and return what it changed: each sample row writes its token where
        ``advance`` left its placeholder (core/sample_writer.py); the blocks the step filled enter
        the prefix cache; then each finish is decided, here. A row whose logits were not finite
        fails (reason "error") before its blocks can enter the prefix cache. ``out`` None: the
        step sampled nothing (it scheduled nothing, or it was abandoned before it ran), and only
        the events are taken."""
        now = time.perf_counter()
        new_tokens: list[tuple[int, ...]] = [()] * len(batch.seqs)
        finished: list[Sequence] = []
        spec = None
        if out is not None:
            self._fail_non_finite(batch, out, finished)
            commit, running = self.bm.commit, SequenceStatus.RUNNING
            for seq in batch.seqs:
                if seq.status is running:  # (a sequence preempted meanwhile holds no blocks)
                    commit(seq)

            def finish(seq: Sequence, token: int) -> bool:
                return self._finish_if_done(seq, token, batch.step, finished)

            new_tokens, spec = write_samples(batch, out, now, self.bm, finish)
        return StepOutcome(
            new_token_ids=tuple(new_tokens),
            finished_ids=tuple([s.seq_id for s in finished]),
            finished_outputs=tuple([(s.seq_id, s.completion_token_ids) for s in finished]),
            events=self.take_events(),
            num_running=len(self.running),
            num_waiting=len(self.waiting),
            time=now,
            num_accepted=tuple(spec.accepted) if spec else (),
            rolled_back_slots=tuple(spec.slots) if spec else (),
        )

    def _fail_non_finite(
        self, batch: ScheduledBatch, out: SamplerOutput, finished: list[Sequence]
    ) -> None:
        """Fail each sequence whose row's logits were not finite, before the step's blocks are
        committed: its KV entries must never enter the prefix cache."""
        if all(out.finite):
            return
        for k, ok in enumerate(out.finite):
            seq = batch.seqs[batch.sample_rows[k]]
            if not ok and seq.status is not SequenceStatus.FINISHED:
                seq.error = "the model produced non-finite logits (NaN/inf)"
                self._finish_now(seq, FinishReason.ERROR, batch.step, finished)

    def _finish_if_done(
        self, seq: Sequence, token: int, step: int, finished: list[Sequence]
    ) -> bool:
        """Decide whether ``seq`` finishes after writing ``token``; if so, finish it now."""
        reason = self._finish_reason(seq, token)
        if reason is None:
            return False
        self._finish_now(seq, reason, step, finished)
        return True

    def _finish_now(
        self, seq: Sequence, reason: FinishReason, step: int, finished: list[Sequence]
    ) -> None:
        self._unqueue(seq)  # (waiting: preempted while its step was in flight)
        self._finish(seq, reason, step)
        finished.append(seq)

    def _unqueue(self, seq: Sequence) -> None:
        """Take an unfinished ``seq`` out of the running list or the waiting queue."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)

    def _leader_computing_prompt(self, leader: Sequence) -> bool:
        """Whether ``leader`` runs and has not yet cached (computed, and committed in a
        postprocess) the prompt's full blocks that a sibling's ``match_prefix`` would look for. A
        waiting or finished leader is no reason to wait (waiting for it could deadlock behind a
        preempted sibling)."""
        if leader.status is not SequenceStatus.RUNNING or not self.bm.enable_prefix_caching:
            return False
        return leader.num_hashed_blocks < (leader.num_prompt_tokens - 1) // self.bm.block_size

    def _finish_reason(self, seq: Sequence, token: int) -> FinishReason | None:
        params = seq.params
        num_tokens = len(seq.token_ids)
        if num_tokens - seq.num_prompt_tokens >= params.min_tokens and (
            (token in self.eos_token_ids and not params.ignore_eos)
            or token in params.stop_token_ids
        ):
            return FinishReason.STOP  # (before min_tokens the sampler cannot pick these)
        if params.stop and self.stop_checker is not None and self.stop_checker(seq):
            return FinishReason.STOP  # it follows the text from the start, checks from min_tokens
        if num_tokens >= seq.max_num_tokens:  # max_tokens, or max_model_len
            return FinishReason.LENGTH
        return None

    def _finish(self, seq: Sequence, reason: FinishReason, step: int) -> None:
        before = seq.status
        if is_pending(seq.token_ids[-1]):  # aborted while its step is in flight
            seq.token_ids.pop()
        if seq.block_table:
            self.bm.free_seq(seq)
        seq.status, seq.finish_reason = SequenceStatus.FINISHED, reason
        seq.finish_time = self._event(seq, before, SequenceStatus.FINISHED, reason.value, step).time

    def _event(
        self,
        seq: Sequence,
        before: SequenceStatus | None,
        after: SequenceStatus,
        reason: str,
        step: int,
        num_tokens: int = 0,
    ) -> SequenceEvent:
        event = SequenceEvent(
            step, seq.seq_id, before, after, reason, time.perf_counter(), num_tokens
        )
        self._events.append(event)
        return event

    def check_integrity(self) -> list[str]:
        problems = self.bm.check_integrity(self.running)
        for seq in self.waiting:
            if seq.block_table:
                problems.append(f"waiting seq {seq.seq_id} holds blocks {seq.block_table}")
        for seq in self.running:
            if seq.status is not SequenceStatus.RUNNING:
                problems.append(f"seq {seq.seq_id} is in the running list with status {seq.status}")
        if len(self.running) > self.max_num_seqs:
            problems.append(f"{len(self.running)} running sequences exceed max_num_seqs")
        return problems
