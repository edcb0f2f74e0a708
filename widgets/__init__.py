"""nano-vLLM Workbench: live views of the engine and step-by-step controls, for JupyterLab.

    import widgets
    wb = widgets.workbench()          # the kernel's one engine (teaching model by default) + views
    wb = widgets.workbench(num_kvcache_blocks=32, history_steps=500)  # engine config, view options
    wb.add_request("What is a block table?", max_tokens=32)
    wb.step()                         # or the Step / Run buttons; wb.show_step(3) travels back
    wb                                # the dashboard: controls on top, views below
    wb.recorder.steps                 # everything shown, as DataFrames

Views only observe: they read ``StepRecord``s and ``EngineSnapshot``s, never engine internals.
"""

from ._blocks import BlockView
from ._controls import Controls
from ._history import Frame, History, Throttle
from ._metrics import MetricsPanel
from ._singleton import (
    TEACHING_DEFAULTS,
    WORKBENCH_OPTIONS,
    close_workbench,
    current_workbench,
    workbench,
)
from ._timeline import STATE_NAMES, SequenceTimeline, StatusTracker, TimelineView
from ._timing import TimingView
from ._workbench import Workbench

__all__ = [
    "workbench",
    "close_workbench",
    "current_workbench",
    "Workbench",
    "TEACHING_DEFAULTS",
    "WORKBENCH_OPTIONS",
    "BlockView",
    "TimelineView",
    "SequenceTimeline",
    "StatusTracker",
    "STATE_NAMES",
    "TimingView",
    "MetricsPanel",
    "Controls",
    "History",
    "Frame",
    "Throttle",
]
