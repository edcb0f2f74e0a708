"""What the engine shows: ``Recorder`` (StepRecords and events as DataFrames), ``EngineSnapshot``
(blocks and sequences right now), ``MetricsCollector`` (``get_metrics()``), the HTML tables
notebooks display, and the data the workbench's views draw from a snapshot: ``block_table`` (one
request's logical -> physical blocks), ``prefix_tree`` (the cached hash chains as a tree) and
``request_rows`` (one row per request). ``replay`` runs a recorded workload on a second engine of
its own. Observers only read StepRecords and snapshots; none of them changes the engine."""
