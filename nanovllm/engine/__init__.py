"""The engine, one sub-package per concern; ``llm_engine.LLMEngine`` ties them together.

::

    llm_engine.py   LLMEngine: add_request / step / abort / get_output / close; the step loop
    requests.py     prompt forms in, one Sequence per sample (n), RequestOutput out
    core/           what is decided: Sequence, BlockManager (paged blocks, prefix cache),
                    Scheduler (schedule -> ScheduledBatch, postprocess), StepRecord and events,
                    the incremental detokenizer and stop strings.
                    Pure Python: no torch, no numpy (a test imports it and checks)
    runner/         what is computed: StepInputs (host arrays), the Executor interface,
                    ModelRunner (model, KV cache, sampler), CUDA graphs, KV-cache sizing
    parallel/       tensor parallelism: WorkerGroup (an Executor over spawned ranks), the
                    child-process side, the shared-memory channel for step inputs
    observe/        what is seen: Recorder (history as DataFrames), EngineSnapshot,
                    MetricsCollector (get_metrics), HTML views for notebooks

Dependencies point one way: ``observe`` and ``runner`` read ``core``; ``core`` reads neither.
"""
