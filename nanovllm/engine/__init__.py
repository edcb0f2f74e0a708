"""The engine, one sub-package per concern; ``llm_engine.LLMEngine`` ties them together.

::

    llm_engine.py   LLMEngine: add_request / step / step_overlapped / abort / get_output / close;
                    and the executor's choice (make_executor)
    step_loop.py    StepLoop: a step's launch, finish and record; the overlap loop
    observers.py    the subscribed observers, and what an observer's exception does
    requests.py     prompt forms in, one Sequence per sample (n), RequestOutput out
    core/           what is decided: Sequence and SequenceEvent, BlockManager (paged blocks,
                    prefix cache), Scheduler (schedule -> ScheduledBatch, postprocess ->
                    StepOutcome), StepRecord (step_record fills it), the incremental
                    detokenizer and stop strings. Pure Python: no torch, no numpy
    runner/         what is computed: StepInputs (host arrays), the Executor interface,
                    ModelRunner (model, KV cache, sampler), CUDA graphs, KV-cache sizing
    parallel/       tensor parallelism: WorkerGroup (an Executor over spawned ranks), the
                    child-process side, the shared-memory channel for step inputs
    observe/        what is seen: Recorder (history as DataFrames), EngineSnapshot,
                    MetricsCollector (get_metrics), HTML views for notebooks; it only reads

Dependencies point one way, ``llm_engine > step_loop > requests | observe | parallel | observers
> runner > core > spec``
(``|``: independent of each other), and ``lint-imports`` checks it (pyproject.toml's contracts).
"""
