"""Kept for ``benchmarks/workbench_overhead.py`` (``from widgets._singleton import default_model``):
the kernel's one workbench lives in kernel.py. Remove once that import says ``widgets.kernel``."""

from .kernel import default_model

__all__ = ["default_model"]
