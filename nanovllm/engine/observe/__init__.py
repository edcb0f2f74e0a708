"""What the engine shows: ``Recorder`` (StepRecords and events as DataFrames), ``EngineSnapshot``
(blocks and sequences right now), ``MetricsCollector`` (``get_metrics()``), and the HTML tables
notebooks display. Observers only read StepRecords and snapshots; none of them changes the
engine."""
