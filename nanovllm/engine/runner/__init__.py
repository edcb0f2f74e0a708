"""What the engine computes: a ``ScheduledBatch`` becomes host arrays (``inputs``), then a forward
pass over the paged KV cache and sampled tokens (``model_runner``, behind the ``Executor``
interface), with decode CUDA graphs and KV-cache sizing on GPU."""
