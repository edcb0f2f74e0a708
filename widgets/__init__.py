"""nano-vLLM Workbench: live views of the engine and step-by-step controls, for JupyterLab.

    import widgets
    wb = widgets.workbench()          # the kernel's one engine (teaching model by default) + views
    wb = widgets.workbench(num_kvcache_blocks=32, history_steps=500)  # engine config, view options
    wb.add_request("What is a block table?", max_tokens=32)
    wb.step()                         # or the Step / Run buttons; wb.show_step(3) travels back
    wb                                # the dashboard: controls on top, views below
    wb.recorder.steps                 # everything shown, as DataFrames

    w = widgets.watch_vllm("tcp://host:5557", model=path, replay="tcp://host:5558",
                           metrics_url="http://host:8000/metrics")   # a vLLM's prefix cache
    w = widgets.watch(llm)            # ours, through the same KV events and views

The package, by role::

    workbench.py   the public facade (Workbench)      kernel.py   the kernel's one workbench
    stage.py       what is shown, and when            driver.py   what moves the engine
    pacing.py      the one redraw gate                dashboard.py  the views' layout and loops
    options.py     the workbench's own options        replay.py   what-if replay, shown
    watcher.py     Watch: a prefix cache through its KV events (a vLLM's or ours), polled
    attach.py      watch / watch_vllm: a source and its Watch, one per endpoint in a kernel
    model/         data, no widgets: history, frames (the step observer), selection, timeline
                   states, breakpoints, texts, grid cells
    views/         one file per view behind one interface (base.py: View, DrawContext), the figure
                   helper (figures.py) and the registry (views/__init__.py)
    controls/      the buttons and forms (toolbar, fields, status line, replay form) and the wiring

Views only observe: they draw from a ``DrawContext`` (StepRecords, EngineSnapshots, metrics, or
a cache source of KV events), never from an engine. The widgets read our engine through
nanovllm's public API and ``nanovllm.engine.observe`` only, and a vLLM through ``nanovllm.bridge``
(its KV events and metrics: a public package for this purpose, whose sockets open only when a
watch is made); tests/widgets/test_layout.py holds them to it.
"""

from .attach import watch, watch_vllm
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
from .watcher import Watch
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
    "watch",
    "watch_vllm",
    "Watch",
]
