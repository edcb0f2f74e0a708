"""What the engine decides, as plain Python: sequences, paged blocks and the prefix cache, the
scheduler, and the records of each step. Never imports torch or numpy, so every decision can be
tested with lists of ints."""
