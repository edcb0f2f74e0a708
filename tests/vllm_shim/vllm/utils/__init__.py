"""``vllm.utils``'s name for the examples' parser (older examples import it from here)."""

from vllm.utils.argparse_utils import FlexibleArgumentParser

__all__ = ["FlexibleArgumentParser"]
