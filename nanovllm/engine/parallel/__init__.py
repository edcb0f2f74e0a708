"""Tensor parallelism in spawned worker processes: ``worker_group.WorkerGroup`` (the main process's
side, an ``Executor``), ``worker_main`` (one rank's process) and ``shm_channel`` (step inputs
through shared memory)."""
