"""nano-vLLM Workbench: live views of the engine and step-by-step controls, for JupyterLab.

    import widgets
    wb = widgets.workbench()          # the kernel's one engine (teaching model by default) + views
    wb = widgets.workbench(num_kvcache_blocks=32, history_steps=500)  # engine config, view options
    wb.add_request("What is a block table?", max_tokens=32)
    wb.step()                         # or the Step / Run buttons; wb.show_step(3) travels back
    wb                                # the dashboard: controls on top, views below
    wb.recorder.steps                 # everything shown, as DataFrames

The package, by role::

    workbench.py   the public facade (Workbench)      kernel.py   the kernel's one workbench
    stage.py       what is shown, and when            driver.py   what moves the engine
    pacing.py      the one redraw gate                dashboard.py  the views' layout and loops
    options.py     the workbench's own options        replay.py   what-if replay, shown
    model/         data, no widgets: history, frames (the step observer), selection, timeline
                   states, breakpoints, texts, grid cells
    views/         one file per view behind one interface (base.py: View, DrawContext), the figure
                   helper (figures.py) and the registry (views/__init__.py)
    controls/      the buttons and forms (toolbar, fields, status line, replay form) and the wiring

Views only observe: they draw from a ``DrawContext`` (StepRecords, EngineSnapshots, metrics), never
from an engine.
"""

from .controls.toolbar import Controls
from .kernel import TEACHING_DEFAULTS, close_workbench, current_workbench, workbench
from .model.history import Frame, History
from .model.states import STATE_NAMES, SequenceTimeline, StatusTracker
from .options import WORKBENCH_OPTIONS
from .pacing import RedrawGate
from .views.blocks import BlockView
from .views.metrics import MetricsPanel
from .views.timeline import TimelineView
from .views.timing import TimingView
from .workbench import Workbench

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
    "RedrawGate",
]
