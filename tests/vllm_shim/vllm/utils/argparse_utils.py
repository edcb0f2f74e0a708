"""``FlexibleArgumentParser`` is the standard library's parser here (vLLM's also accepts
``--snake_case`` spellings and config files, which the examples do not use)."""

from argparse import ArgumentParser as FlexibleArgumentParser

__all__ = ["FlexibleArgumentParser"]
