"""The workbench in a real browser: JupyterLab served on loopback, driven by headless Chromium.

What must hold: the dashboard renders (plotly's SVG for the block grid, timeline and timing; the
block grid's heatmap image), the metrics panel follows a plain ``llm.generate`` while the cell is
still running (widget messages leave the busy kernel), Step / Add request / Run / Pause work from
clicks, a request picked in the dropdown gets its block table drawn, a click on a block of the
grid picks one of that block's owners, and no widget fails to display. A chart with nothing to
show (before the first step, after Reset) is its title line, and grows when data arrives; an
engine without speculation has no speculation view; at a 940 px window no request row cuts its
seq id, state or latencies. Screenshots are saved under the test's tmp_path and copied to
/tmp/workbench_screenshot.png (the page), /tmp/workbench_empty.png (before the first step),
/tmp/workbench_reset.png (after Reset) and /tmp/workbench_<view>.png (the block table, the
requests panel, the prefix tree, the requests panel at 940 px, with the worst rows on top).

Needs Debian's chromium (CI installs it); skipped, saying so, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
GENERATE_TOKENS = 60  # cell 2's generate: one step per token, 150 ms of sleep each
SCREENSHOT_COPY = Path("/tmp/workbench_screenshot.png")
FAILED_SCREENSHOT = Path("/tmp/workbench_failed.png")  # the page when an assertion failed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium fonts-liberation)",
    ),
]

CELLS = [
    # 1: the dashboard
    # the random tiny model: it never stops at EOS, so 12 requests keep Run busy (the default
    # teaching model answers the form's question in a dozen tokens and Run would go idle)
    "import time\nimport widgets\nfrom nanovllm import SamplingParams\n"
    "from nanovllm.testing import tiny_model_path\n"
    "wb = widgets.workbench(str(tiny_model_path()))\n"
    "wb.controls.max_tokens.value = 480\nwb.controls.copies.value = 12\n"
    # what a slow Pause is made of, on the page's clock (ms): when the kernel handled the toggle,
    # and when each frame was drawn and for how long (the gate's draw, timed)
    "toggled, drawn = [], []\n"
    "wb.controls.run_toggle.observe(\n"
    "    lambda ch: toggled.append((round(1e3 * time.time(), 1), ch['new'])), 'value')\n"
    "def timed(draw=wb.gate.draw):\n"
    "    t = time.time()\n    draw()\n"
    "    drawn.append((round(1e3 * t, 1), round(1e3 * (time.time() - t), 1)))\n"
    "wb.gate.draw = timed\nwb",
    # 2: a plain generate, slowed by an observer, so the views must update while the cell runs
    # (for 9 s or more: a redraw's throttle may wait up to 2 s on a slow machine, _history.py)
    "slow = wb.llm.subscribe(lambda record: time.sleep(0.15))\n"
    "outs = wb.llm.generate(['What is a block table?', 'How does prefix caching save work?'],\n"
    f"                       SamplingParams(temperature=0, max_tokens={GENERATE_TOKENS}, "
    "ignore_eos=True),\n"
    "                       use_tqdm=False)\n"
    "slow()\nlen(outs)",
    # 3: when each step ended, on the wall clock the page uses (Date.now(), in ms)
    "import json\noffset = time.time() - time.perf_counter()\n"
    "ends = [round(1e3 * (f.record.time + offset), 1) for f in wb.history.frames]\n"
    "print('ENDS=' + json.dumps(ends))\n"
    "print('LAST=' + str(wb.history.frames[-1].record.step))\n"
    "print('TOGGLED=' + json.dumps(toggled))\nprint('DRAWN=' + json.dumps(drawn))",
    # 4: a block some request holds, in the snapshot shown (the grid click below targets it)
    "shown = wb.history.snapshot_at(wb.shown_step)\nowned = min(shown.owners)\n"
    "print(f'OWNED={owned},{wb.block_view.position(owned)[0]},{wb.block_view.position(owned)[1]}')",
    # 5: whom the click picked, and that block's owners
    "print(f'PICKED={wb.selection.picked}')\n"
    "print('OWNERS=' + ','.join(map(str, shown.owners[owned])))",
    # 6: the figures renewed because the page drew them blank (anywidget's 2 s set-up limit)
    "print('RENEWED=' + repr(wb.renewed))",
]
VIEW_SHOTS = ("block_table", "requests", "prefix_tree")
# The page position of grid cell (column, row): plotly's axes map data to pixels.
GRID_CELL = """([col, row]) => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')]
    .find((p) => p.querySelector('.gtitle')?.textContent.startsWith('KV cache blocks'));
  const fl = plot._fullLayout, box = plot.getBoundingClientRect();
  return [box.left + fl.margin.l + fl.xaxis.l2p(col), box.top + fl.margin.t + fl.yaxis.l2p(row)];
}"""
# Figures whose drawing is wider than the box that shows it (a colorbar's labels get cut off).
CLIPPED_FIGURES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap((plot) => {
  const svg = plot.querySelector('.main-svg'), box = plot.parentElement.getBoundingClientRect();
  const right = Math.max(...[...plot.querySelectorAll('.colorbar, .legend, .main-svg')]
    .map((e) => e.getBoundingClientRect().right));
  return right > box.right + 1 ? [{title: plot.querySelector('.gtitle')?.textContent,
    svg: svg.getBoundingClientRect().width, box: box.width, right: right - box.left}] : [];
})"""
PAUSE_CLICKS = 10
# click -> the kernel's answer drawn (the toggle reads "Run" again), for every click: one frame in
# flight at most (widgets/pacing.py), so a click waits for at most one frame. A Pause not answered
# within PAUSE_LOST_S counts as lost. The figures are printed either way.
PAUSE_LATENCY_MAX_S = 0.5
PAUSE_LOST_S = 20

# anywidget gives a model 2 s to load its module, then drops every message to it (the figures now
# share one plotly module and set up at once, views/figures.py, but the renewal stays as a guard).
# This makes it happen, every time, to the block grid: the third model the page sets up (the
# PageEcho is the first, the shared PlotlyModule the second).
LOSE_GRID_MODEL = """{
  const timeout = AbortSignal.timeout; let calls = 0;
  AbortSignal.timeout = (ms) => timeout.call(AbortSignal, ms === 2000 && ++calls === 3 ? 1 : ms);
}"""
# Records the page-clock time of every button press (capture phase: before any widget handler),
# and the page's long tasks ([start, ms]: its main thread busy, so a click or a redraw waits).
RECORD_CLICKS = """() => {
  window.__clicks = [];
  window.__long = [];
  new PerformanceObserver((list) => list.getEntries().forEach((e) =>
    window.__long.push([performance.timeOrigin + e.startTime, e.duration]))
  ).observe({type: 'longtask'});
  document.addEventListener('pointerdown', (ev) => {
    const b = ev.target.closest('button');
    if (b) window.__clicks.push({t: Date.now(), label: b.innerText.trim()});
  }, true);
}"""
# Resolves (polled every animation frame) with the time the Run/Pause toggle reads ``label``.
TOGGLE_READS = """(label) => {
  const b = [...document.querySelectorAll('button.widget-toggle-button')]
    .find(b => ['Run', 'Pause'].includes(b.innerText.trim()));
  return b && b.innerText.trim() === label && Date.now();
}"""


def pause_breakdown(pauses, shown, toggled, drawn, ends, long_tasks) -> list[str]:
    """Per Pause (page-clock ms): the click, when the kernel handled it, when the page showed it;
    in between, the steps that ended and the frames the kernel drew before handling it, and the
    page's long tasks until it showed it: where a slow Pause spent its time."""
    out = []
    for i, (c, s) in enumerate(zip(pauses, shown, strict=True)):
        k = next((t for t, on in toggled if t >= c and not on), None)
        until = k if k is not None else s
        steps = sum(c < t <= until for t in ends)
        frames = [ms for t, ms in drawn if c - ms < t <= until]
        busy = sum(min(t + d, s) - max(t, c) for t, d in long_tasks if t < s and t + d > c)
        kernel = "never" if k is None else f"{k - c:.0f} ms"
        out.append(
            f"pause {i}: {s - c:.0f} ms = kernel handled it after {kernel} ({steps} step(s) ended, "
            f"{len(frames)} frame(s) drawn: {sum(frames):.0f} ms), page long tasks {busy:.0f} ms"
        )
    return out


def write_notebook(path: Path) -> None:
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell{i}",
            "metadata": {},
            "outputs": [],
            "source": src,
        }
        for i, src in enumerate(CELLS)
    ]
    nb = {
        "cells": cells,
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    }
    path.write_text(json.dumps(nb))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server of a folder holding the test's notebook; yields its URL."""
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "workbench.ipynb")
    yield from serve(tmp_path, root)


@pytest.fixture
def lab_notebooks(tmp_path):
    """A JupyterLab server of a copy of notebooks/ (what the page saves goes to the copy)."""
    root = tmp_path / "root"
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    yield from serve(tmp_path, root)


def serve(tmp_path: Path, root: Path):
    """A JupyterLab server on 127.0.0.1 serving ``root``, with throwaway config/runtime/workspace
    dirs; yields its URL. Killed with its whole process group (kernels included) at the end."""
    news = (
        tmp_path
        / "config/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    )
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about news?" toast over the page
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        TOKENIZERS_PARALLELISM="false",
    )
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, proc, tmp_path / "jupyter.log")
        yield url
    finally:
        stop_group(proc)
        log.close()


def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (server and kernels), SIGKILL what is left, reap."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            proc.poll()
            time.sleep(0.1)
    proc.wait(timeout=5)
    assert not group_alive(pgid), "processes of the jupyter server's group outlived it"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    out = subprocess.run(
        ["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True
    ).stdout
    return any(
        not s.startswith("Z") for s in out.split()
    )  # zombies of a killed group are not alive


# ---- page helpers --------------------------------------------------------------------------------
KERNEL_STATUS = (
    "() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status"
)
PANEL_STEP = re.compile(r"Step (\d+) \((live|time travel)")


def wait_until(page, condition, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(int(poll * 1000))
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def panel_step(page) -> int | None:
    """The step the metrics panel shows ("Step 12 (live)"), read from the DOM."""
    texts = page.locator(".widget-html-content").all_inner_texts()
    found = [int(m.group(1)) for t in texts if (m := PANEL_STEP.search(t))]
    return found[0] if found else None


def run_cell(page, index: int) -> None:
    """Run cell ``index`` (0-based). By index: a click on a widget selects the cell whose output
    holds it, so "run the selected cell" would run the dashboard's cell again. Cells go one at a
    time: JupyterLab's widget manager asks the kernel for its widgets the first time one is
    displayed, and a kernel busy with the next cell (as with run-all) answers only once that cell is
    done."""
    # not awaited: execute() resolves only when the cell is done, and we watch it while it runs
    page.evaluate(
        """(i) => {
        window.jupyterapp.shell.currentWidget.content.activeCellIndex = i;
        window.jupyterapp.commands.execute('notebook:run-cell');
    }""",
        index,
    )


CELL_DONE = """(i) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
  const prompt = cell.node.querySelector('.jp-InputPrompt')?.textContent ?? '';
  return cell.model.executionCount !== null && !prompt.includes('*');
}"""


def wait_for_cell(page, index: int, timeout: float) -> None:
    """Until cell ``index`` has finished (its prompt shows a number, not ``[*]``); the time it
    took is printed (a loaded machine builds the engine slowly)."""
    started = time.monotonic()
    wait_until(
        page, lambda: page.evaluate(CELL_DONE, index), timeout, f"cell {index + 1} to finish"
    )
    print(f"cell {index + 1} ran in {time.monotonic() - started:.1f} s")


def printed(page, key: str) -> str | None:
    """What a cell printed after ``KEY=``, once it is there."""
    for text in page.locator(".jp-OutputArea-output").all_inner_texts():
        for line in text.splitlines():
            if line.startswith(key + "="):
                return line[len(key) + 1 :].strip()
    return None


def step_ends(page) -> str | None:
    """The JSON list of step end times cell 3 prints."""
    return printed(page, "ENDS")


def last_step_text(page) -> str | None:
    """The index of the last step the kernel ran, as cell 3 prints it."""
    return printed(page, "LAST")


def settled_panel_step(page, quiet_s: float = 1.0, timeout: float = 10) -> int:
    """The panel's step once it has not changed for ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout
    value, since = panel_step(page), time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        now = panel_step(page)
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return value
    pytest.fail(f"the panel kept changing for {timeout} s after Pause (last read: step {value})")


# What a failure report shows of the page: the toggle, the kernel, the last presses.
PAGE_STATE = """() => {
  const b = [...document.querySelectorAll('button.widget-toggle-button')]
    .find(b => ['Run', 'Pause'].includes(b.innerText.trim()));
  return {toggle: b && {label: b.innerText.trim(), pressed: b.classList.contains('mod-active')},
          kernel: window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status,
          clicks: (window.__clicks ?? []).slice(-6), now: Date.now()};
}"""


def page_state(page, log: Path) -> str:
    """The page's state and the server log's tail (the kernel's stderr), for a failure report."""
    try:
        state = json.dumps(page.evaluate(PAGE_STATE))
    except Exception as e:  # the page itself may be what failed
        state = f"(page unreadable: {e})"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    return f"page state: {state}\njupyter log tail:\n{tail}"


def report_failure(page, tmp_path: Path) -> None:
    """The page as it was when a test failed: a screenshot (kept at FAILED_SCREENSHOT), its state
    and the server log's tail, printed."""
    page.screenshot(path=str(tmp_path / "failed.png"))
    shutil.copyfile(tmp_path / "failed.png", FAILED_SCREENSHOT)
    print(page_state(page, tmp_path / "jupyter.log"))


def renewed_figures(page) -> str:
    """``wb.renewed`` as cell 6 prints it (runs the cell)."""
    run_cell(page, 5)
    return wait_until(page, lambda: printed(page, "RENEWED"), 30, "wb.renewed")


def button(page, label: str):
    return page.locator("button.jupyter-button", has_text=re.compile(rf"^\s*{label}\s*$")).first


PLOT_TITLED = """(prefix) => [...document.querySelectorAll('.js-plotly-plot')]
  .findIndex((p) => (p.querySelector('.gtitle')?.textContent ?? '').startsWith(prefix))"""


def plot_titled(page, prefix: str, timeout: float = 20):
    """The plotly figure whose title starts with ``prefix`` (SVG text: matched in JS), once
    there."""
    try:
        i = wait_until(
            page, lambda: (k := page.evaluate(PLOT_TITLED, prefix)) >= 0 and k + 1, timeout, prefix
        )
    except BaseException:
        print("figure titles:", page.locator(".js-plotly-plot .gtitle").all_text_contents())
        raise
    return page.locator(".js-plotly-plot").nth(i - 1)


def pick_a_request_and_click_a_block(page, tmp_path: Path) -> None:
    """Pick the newest request in the dropdown: its block table is drawn (bars and the physical
    blocks' squares); then click a block of the grid: the request picked is one of its owners."""
    picker = page.locator(".nanovllm-view-block_table .widget-dropdown select").first
    option = picker.locator("option").nth(1).inner_text()  # the newest request
    picker.select_option(label=option)
    label = option.replace("\xa0", " ").strip()  # ipywidgets writes spaces as no-break spaces
    table = plot_titled(page, f"Block table of {label} (")
    wait_until(
        page,
        lambda: (
            table.locator(".barlayer .point").count() > 0
            and table.locator(".scatterlayer .point").count() > 0
        ),
        20,
        f"the block table of {label} to be drawn",
    )
    for view, locator in zip(
        VIEW_SHOTS,
        (
            page.locator(".nanovllm-view-block_table"),
            page.locator(".nanovllm-requests"),
            plot_titled(page, "Prefix cache"),
        ),
    ):
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(tmp_path / f"{view}.png"))
        shutil.copyfile(tmp_path / f"{view}.png", f"/tmp/workbench_{view}.png")

    run_cell(page, 3)  # cell 4: a block some request holds, and its cell
    owned = wait_until(page, lambda: printed(page, "OWNED"), 30, "a held block")
    block, col, row = map(int, owned.split(","))
    plot_titled(page, "KV cache blocks").scroll_into_view_if_needed()
    x, y = page.evaluate(GRID_CELL, [col, row])
    page.mouse.click(x, y)
    page.wait_for_timeout(500)  # the click's message goes out before cell 5's request
    run_cell(page, 4)  # cell 5: whom the click picked
    picked = wait_until(page, lambda: printed(page, "PICKED"), 30, "the picked request")
    owners = wait_until(page, lambda: printed(page, "OWNERS"), 30, "the block's owners")
    assert picked in owners.split(","), (block, picked, owners)
    plot_titled(page, f"Block table of seq {picked} (")


# Each request row (those drawn, and ``rows``: the worst rows' HTML, added for the measure and the
# screenshot, then removed by DROP_ADDED): how far its first line's text (seq id, state) and its
# second line's latencies ("TTFT ... · ... ms/token") reach, and the lines' width, in px.
ROW_WIDTHS = """(rows) => {
  const table = [...document.querySelectorAll('.nanovllm-requests .widget-html-content')]
    .find((e) => e.querySelector(':scope > div > div'));
  const added = rows.map((html) => {
    const d = document.createElement('div');
    d.innerHTML = html;
    const row = d.firstElementChild;
    row.dataset.added = 'yes';
    table.prepend(row);
    return row;
  });
  const out = [...table.children].map((row) => {
    const [first, second] = row.children;
    const text = second.firstChild, end = text.textContent.indexOf('/token') + 6;
    const whole = document.createRange(), range = document.createRange();
    whole.selectNodeContents(first);
    range.setStart(text, 0);
    range.setEnd(text, end);
    const left = second.getBoundingClientRect().left;
    return {first: first.innerText, needs: whole.getBoundingClientRect().right - left,
      latencies: text.textContent.slice(0, end), reach: range.getBoundingClientRect().right - left,
      width: second.clientWidth, added: added.includes(row)};
  });
  return out;
}"""
DROP_ADDED = "() => document.querySelectorAll('[data-added=yes]').forEach((row) => row.remove())"
ELLIPSIS_PX = 14  # a cut line ends in "…": the latencies must end before it


def worst_rows() -> list[str]:
    """The widest rows the panel can draw (a 5-digit seq id, 7-character latencies), as HTML."""
    from nanovllm.engine.observe.request_rows import RequestRow
    from widgets.views import ViewSetup
    from widgets.views.requests import RequestsPanel

    panel = RequestsPanel(ViewSetup(num_blocks=8, block_size=16))
    rows = [
        RequestRow(seq, status, 8, 12, 19, 0, 3, ttft, inter, reason)
        for seq, status, reason in ((1234, "PREEMPTED", None), (99999, "FINISHED", "length"))
        for ttft, inter in ((0.0999, 0.0999), (4321.0, 4321.0))
    ]
    return [panel._html(r, lambda *span: "What is a block table? " * 4) for r in rows]


def requests_rows_fit_a_narrow_panel(page, tmp_path: Path) -> None:
    """A learner's panel was ~270 px wide and cut TTFT and ms/token off; then a 4-digit seq id with
    two 7-character latencies cut "ms/token" at a 940 px window: there, every row drawn and the
    worst rows show their first line (seq id, state) whole and their latencies before any "…";
    the screenshots show the panel, and the panel with the worst rows on top."""
    page.set_viewport_size({"width": 940, "height": 2000})
    panel = page.locator(".nanovllm-requests")
    panel.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    panel.screenshot(path=str(tmp_path / "requests_narrow.png"))
    shutil.copyfile(tmp_path / "requests_narrow.png", "/tmp/workbench_requests_narrow.png")
    rows = page.evaluate(ROW_WIDTHS, worst_rows())  # the worst rows on top, for the screenshot
    panel.screenshot(path=str(tmp_path / "requests_worst.png"))
    shutil.copyfile(tmp_path / "requests_worst.png", "/tmp/workbench_requests_worst.png")
    page.evaluate(DROP_ADDED)
    width = panel.evaluate("(e) => e.getBoundingClientRect().width")
    worst = [r for r in rows if r["added"]]
    drawn = next(r for r in rows if not r["added"])
    print(f"requests panel {width:.0f} px wide; a row drawn: {drawn}; the worst: {worst}")
    assert len(worst) == 4 and len(rows) > 4, rows
    assert all(r["needs"] <= r["width"] + 1 for r in rows), rows
    assert all(r["reach"] + ELLIPSIS_PX <= r["width"] for r in rows), rows


# The dashboard's charts as the page draws them: {view name: [height px, ticks drawn, px from the
# box's top to its title's]}.
CHART_SIZES = """() => Object.fromEntries([...document.querySelectorAll('.nanovllm-figure')]
  .map((box) => [[...box.classList].find((c) => c.startsWith('nanovllm-figure-')).slice(16),
    [Math.round(box.getBoundingClientRect().height),
     box.querySelectorAll('.xaxislayer-above .xtick, .yaxislayer-above .ytick').length,
     Math.round((box.querySelector('.gtitle')?.getBoundingClientRect().top ?? NaN)
       - box.getBoundingClientRect().top)]]))"""
EMPTY_CHARTS = ("timeline", "timing", "token_budget", "block_table", "prefix_tree")
EMPTY_MAX_PX = 80  # an empty chart: its title line (widgets/views/base.py, View.fit)


def charts_are_title_lines(page, names=EMPTY_CHARTS) -> dict:
    """The charts ``names`` drawn as their title line (no tick drawn, the title inside the
    chart's box), once they are."""
    return wait_until(
        page,
        lambda: (
            (sizes := page.evaluate(CHART_SIZES))
            and all(n in sizes and sizes[n][0] <= EMPTY_MAX_PX and not sizes[n][1] for n in names)
            and all(0 <= sizes[n][2] < sizes[n][0] - 10 for n in names)  # the title inside
            and sizes
        ),
        20,
        f"the empty charts {names} drawn as their title line",
    )


def test_workbench_renders_and_reacts_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.on(
                "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
            page.goto(f"{lab}/lab/tree/workbench.ipynb?reset")
            wait_until(page, lambda: page.evaluate(KERNEL_STATUS) == "idle", 90, "an idle kernel")
            run_cell(page, 0)  # cell 1 (one at a time, as a person would: see run_next_cell)
            wait_for_cell(page, 0, 240)  # the engine is built, the dashboard displayed

            # the dashboard renders: three plotly figures, the block grid's heatmap
            page.locator(".js-plotly-plot .main-svg").nth(2).wait_for(
                state="attached", timeout=90_000
            )
            page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(
                state="attached", timeout=30_000
            )
            # no step yet: every chart but the grid is its title line; no speculation view (the
            # engine does not draft), the grid at its full height
            sizes = charts_are_title_lines(page)
            print(f"charts before the first step (px, ticks, title): {sizes}")
            assert "speculation" not in sizes, sizes
            assert page.locator(".nanovllm-view-speculation").count() == 0
            assert sizes["blocks"][0] > 200 and sizes["blocks"][1] > 0, sizes
            page.screenshot(path=str(tmp_path / "empty.png"))
            shutil.copyfile(tmp_path / "empty.png", "/tmp/workbench_empty.png")

            # cell 2 runs generate(): the panel moves while the kernel is still busy
            run_cell(page, 1)
            seen_busy = set()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status, step = page.evaluate(KERNEL_STATUS), panel_step(page)
                if status == "busy" and step is not None:
                    seen_busy.add(step)
                if status == "idle" and seen_busy:
                    break
                page.wait_for_timeout(100)
            assert len(seen_busy) >= 3, (
                f"views did not update while generate ran: saw steps {seen_busy}"
            )
            print(f"steps seen while generate() ran: {sorted(seen_busy)}")
            # once the cell returned, the last steps are drawn (the timer fired on the free loop)
            last = wait_until(
                page,
                lambda: (s := panel_step(page)) is not None and s >= GENERATE_TOKENS - 1 and s,
                10,
                "the panel to show the last step of generate()",
            )

            # Add request + Step, by clicks
            button(page, "Add request").click()
            button(page, "Step").click()
            wait_until(page, lambda: panel_step(page) == last + 1, 20, "Step to show the next step")

            # Run / Pause cycles, each adding 12 requests (the form copies) first: each Pause is
            # answered at once (PAUSE_LATENCY_MAX_S), at most one step (the one in flight) later
            page.evaluate(RECORD_CLICKS)
            latencies, shown_at = [], []
            for i in range(PAUSE_CLICKS):
                start = panel_step(page)
                button(page, "Add request").click()
                button(page, "Run").click()
                wait_until(
                    page,
                    lambda s=start: (panel_step(page) or 0) >= s + 3,
                    20,
                    f"Run to advance (cycle {i}, from step {start})",
                )
                page.wait_for_timeout(
                    150 + 40 * i
                )  # click at a different moment of a step each time
                button(page, "Pause").click()
                shown = page.wait_for_function(
                    TOGGLE_READS, arg="Run", polling="raf", timeout=PAUSE_LOST_S * 1000
                )  # a lost Pause fails here
                shown_at.append(shown.json_value())
                latencies.append((shown_at[-1] - page.evaluate("window.__clicks.at(-1).t")) / 1e3)
            clicks = page.evaluate("window.__clicks")
            long_tasks = page.evaluate("window.__long")
            # The panel may still draw the step that was in flight (a redraw held back while the
            # page was busy); it must then settle. Whether the kernel went on stepping is judged
            # below from the kernel's own step end times, not from what the page drew.
            paused = settled_panel_step(page)

            run_cell(page, 2)  # cell 3: when each step ended
            ends = json.loads(wait_until(page, lambda: step_ends(page), 30, "the step times"))
            last_step = int(wait_until(page, lambda: last_step_text(page), 30, "the last step"))
            assert paused == last_step, (
                f"the panel settled on step {paused}, the kernel ran {last_step}"
            )
            clicks = [c for c in clicks if c["label"] in ("Run", "Pause")]
            runs = [c["t"] for c in clicks if c["label"] == "Run"]
            pauses = [c["t"] for c in clicks if c["label"] == "Pause"]
            assert len(runs) == len(pauses) == PAUSE_CLICKS, clicks
            after = [
                sum(p < t < r for t in ends) for p, r in zip(pauses, [*runs[1:], float("inf")])
            ]
            toggled = json.loads(wait_until(page, lambda: printed(page, "TOGGLED"), 30, "toggles"))
            drawn = json.loads(wait_until(page, lambda: printed(page, "DRAWN"), 30, "frames"))
            report = (
                f"pause latency s: {', '.join(f'{x:.3f}' for x in latencies)} "
                f"(median {sorted(latencies)[len(latencies) // 2]:.3f}, max {max(latencies):.3f}); "
                f"steps after each click: {after}\n"
                + "\n".join(pause_breakdown(pauses, shown_at, toggled, drawn, ends, long_tasks))
                + f"\npage long tasks: {len(long_tasks)}, ms: "
                + ", ".join(f"{d:.0f}" for _, d in sorted(long_tasks, key=lambda x: -x[1])[:12])
                + f"; kernel frames: {len(drawn)}, slowest ms: "
                + ", ".join(f"{d:.0f}" for _, d in sorted(drawn, key=lambda x: -x[1])[:8])
            )
            print(report)
            (tmp_path / "pause_latency.txt").write_text(report + "\n")
            sizes = page.evaluate(CHART_SIZES)
            print(f"charts after the steps (px, ticks): {sizes}")
            grown = [n for n in ("timing", "token_budget") if sizes[n][0] >= 200 and sizes[n][1]]
            assert grown == ["timing", "token_budget"], sizes  # data: full height, with axes
            assert max(latencies) < PAUSE_LATENCY_MAX_S, report
            assert max(after) <= 1, report

            titles = page.locator(
                ".js-plotly-plot .gtitle"
            ).all_text_contents()  # SVG: no innerText
            assert any(t.startswith(f"KV cache blocks after step {paused}") for t in titles), titles
            assert page.locator(".js-plotly-plot .main-svg").count() >= 3
            clipped = page.evaluate(CLIPPED_FIGURES)
            assert not clipped, f"figures wider than their box (right edge cut off): {clipped}"
            assert page.get_by_text("Error displaying widget").count() == 0
            assert page.get_by_text("Error rendering").count() == 0
            plots = page.evaluate(BLANK_PLOTS)
            print(f"plotly figures: {plots['count']}, drawn blank: {plots['blank']}")
            assert not plots["blank"], plots

            shot = tmp_path / "workbench.png"
            page.screenshot(path=str(shot))
            shutil.copyfile(shot, SCREENSHOT_COPY)

            pick_a_request_and_click_a_block(page, tmp_path)
            assert page.get_by_text("Error displaying widget").count() == 0
            renewed = renewed_figures(page)
            print(f"figures renewed: {renewed}")
            assert renewed == "[]", f"figures the page drew blank: {renewed}"
            requests_rows_fit_a_narrow_panel(page, tmp_path)
            page.set_viewport_size({"width": 1400, "height": 2000})
            button(page, "Reset").click()  # every request aborted, no step kept
            sizes = charts_are_title_lines(page, ("timeline", "timing", "token_budget"))
            print(f"charts after Reset (px, ticks, title): {sizes}")
            page.wait_for_timeout(1500)
            print(f"charts 1.5 s after Reset (px, ticks, title): {page.evaluate(CHART_SIZES)}")
            page.locator(".nanovllm-dashboard").first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "reset.png"))
            shutil.copyfile(tmp_path / "reset.png", "/tmp/workbench_reset.png")
        except BaseException:
            report_failure(page, tmp_path)
            raise
        finally:
            browser.close()
    widget_errors = [
        e for e in console_errors if re.search(r"widget|plotly|anywidget|comm", e, re.I)
    ]
    assert not widget_errors, widget_errors


def test_a_figure_whose_page_model_was_lost_is_renewed(lab, tmp_path):
    """The block grid's model loses its messages in the page (LOSE_GRID_MODEL), so it is drawn
    blank; the page reports it (PageEcho.blank) and the workbench renews it (View.renew): the
    grid is drawn with its heatmap and title, and ``wb.renewed`` names it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.add_init_script(LOSE_GRID_MODEL)
            page.goto(f"{lab}/lab/tree/workbench.ipynb?reset")
            wait_until(page, lambda: page.evaluate(KERNEL_STATUS) == "idle", 90, "an idle kernel")
            run_cell(page, 0)
            wait_for_cell(page, 0, 240)
            grid = page.locator(".nanovllm-figure-blocks .js-plotly-plot")
            grid.locator(".heatmaplayer").wait_for(state="attached", timeout=90_000)
            assert grid.locator(".gtitle").text_content().startswith("KV cache blocks")
            renewed = renewed_figures(page)
            print(f"renewed: {renewed}")
            assert "'blocks'" in renewed, renewed
            assert page.get_by_text("Error displaying widget").count() == 0
        except BaseException:
            report_failure(page, tmp_path)
            raise
        finally:
            browser.close()


# What a learner sees after Run All: no cell failed, no widget failed to display.
NOTEBOOK_STATE = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const running = (c) => (c.node.querySelector('.jp-InputPrompt')?.textContent ?? '').includes('*');
  const code = nb.widgets.filter((c) => c.model.type === 'code');
  const errors = nb.node.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]');
  return {done: code.every((c) => c.model.executionCount !== null && !running(c)),
          errors: [...errors].map((e) => e.innerText.slice(0, 300))};
}"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["05_step_by_step", "08_inside_the_cache", "10_speculative_decoding"]
)
def test_a_notebook_run_all_as_a_learner_sees_it(lab_notebooks, tmp_path, name):
    """Run All in the browser: every cell runs, no error output, no blank figure (notebook 08's
    block table, after every request finished, draws the picked request's last table; notebook
    10's speculation view, its acceptance per step); the page is saved as
    /tmp/notebook_<name>_<k>.png, screen by screen, to look at."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{lab_notebooks}/lab/tree/notebooks/{name}.ipynb?reset")
            wait_until(page, lambda: page.evaluate(KERNEL_STATUS) == "idle", 120, "a kernel")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_timeout(2000)
            state = wait_until(
                page, lambda: (st := page.evaluate(NOTEBOOK_STATE))["done"] and st, 400, "Run All"
            )
            assert not state["errors"], state["errors"]
            page.wait_for_timeout(3000)  # the last frames drawn
            assert page.get_by_text("Error displaying widget").count() == 0
            plots = page.evaluate(BLANK_PLOTS)
            assert not plots["blank"], plots
            print(f"{name}: {plots['count']} plotly figures drawn, none blank")
            if name == "08_inside_the_cache":
                table = page.locator(".nanovllm-view-block_table .gtitle").first
                assert "its last with blocks" in table.text_content()
                assert page.locator(".nanovllm-view-block_table .barlayer .point").count() > 0
                labels = page.evaluate(TREE_LABELS)  # every "#k" the kernel sent is drawn
                assert labels["drawn"] == labels["sent"] and labels["sent"], labels
            # an engine that drafts has a speculation view, with its steps' acceptance drawn;
            # the others (no speculative_config) have none
            spec = page.locator(".nanovllm-view-speculation")
            if name == "10_speculative_decoding":
                assert spec.locator(".barlayer .point").count() > 0
                assert "accepted over the window" in spec.locator(".gtitle").text_content()
            else:
                assert spec.count() == 0
            # screen by screen, until the one that shows the last cell's end (the notebook's
            # cells are rendered as they come into view: its height grows while we scroll)
            for k in range(20):
                end_shown = page.evaluate(SCROLL_TO, [".jp-WindowedPanel-outer", 1400 * k])
                page.wait_for_timeout(700)
                page.screenshot(path=str(tmp_path / f"{name}_{k}.png"))
                shutil.copyfile(tmp_path / f"{name}_{k}.png", f"/tmp/notebook_{name}_{k}.png")
                if end_shown:
                    break
        except BaseException:
            report_failure(page, tmp_path)
            raise
        finally:
            browser.close()


# Scrolls the notebook to ``top`` (px; screens of 1,600 px overlap a little); says whether the
# screen shows the last cell's end.
SCROLL_TO = """([selector, top]) => {
  const el = document.querySelector(selector);
  el.scrollTop = top;
  const last = window.jupyterapp.shell.currentWidget.content.widgets.at(-1).node;
  const box = last.getBoundingClientRect();  // zero while the cell is not rendered yet
  return last.isConnected && box.height > 0 && box.bottom <= el.getBoundingClientRect().bottom;
}"""


# The prefix tree's node labels: those in the figure's data, and those drawn.
TREE_LABELS = """() => {
  const p = document.querySelector('.nanovllm-figure-prefix_tree .js-plotly-plot');
  return {sent: p.data[2].text.filter((t) => t.trim()),
          drawn: [...p.querySelectorAll('.textpoint text')].map((t) => t.textContent)
                   .filter((t) => t.trim())};
}"""


# Plotly figures on the page, and those drawn with no trace (a blank figure).
BLANK_PLOTS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return {count: plots.length, blank: plots.filter((p) => p._fullLayout && Array.isArray(p.data)
    && p.data.length === 0).map((p) => p.querySelector('.gtitle')?.textContent ?? '?')};
}"""
