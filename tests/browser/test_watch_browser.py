"""Notebook 09 ("Watching vLLM") in a real browser: Run All in JupyterLab against a real vLLM.

What must hold: every cell runs, no error output, no widget fails to display, no plotly figure is
blank, the watch's status line reads "connected", the prefix tree drawn from vLLM's events has
its nodes on the page in the "stored, state unknown" colour, and the eviction stream has its
markers, and hovering a node of the frozen tree (the shared prompt's) shows its tokens as text and
"no block id". The page is saved screen by screen as /tmp/notebook_09_watching_vllm_<k>.png, the
watch's views as /tmp/watch_<view>.png and the hovered tree as /tmp/watch_tree_hover.png.

Needs Debian's chromium and vLLM (``NANOVLLM_VLLM_PYTHON`` or the ``vllm`` extra); skipped,
saying which is missing, otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_browser import (
    BLANK_PLOTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    KERNEL_STATUS,
    NOTEBOOK_STATE,
    NOTEBOOKS,
    report_failure,
    serve,
    wait_until,
)

from nanovllm.bridge.launch import has_vllm, vllm_python

NAME = "09_watching_vllm"
UNKNOWN_FILL = "rgb(148, 163, 184)"  # views/prefix_tree.py's UNKNOWN_COLOR, as the page draws it
WATCH_VIEWS = ("prefix_tree", "occupancy", "cache_panel", "evictions")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium fonts-liberation)",
    ),
]

# The watch's state as the page shows it: its status line, and its tree's markers.
WATCH_STATE = """() => {
  const watch = document.querySelector('.nanovllm-watch');
  const tree = watch.querySelector('.nanovllm-figure-prefix_tree .js-plotly-plot');
  const evictions = watch.querySelector('.nanovllm-figure-evictions .js-plotly-plot');
  return {
    status: watch.querySelector('.nanovllm-watch-status').textContent,
    fills: [...tree.querySelectorAll('.scatterlayer .trace:last-child .point')]
      .map((p) => p.style.fill),
    evicted: evictions.querySelectorAll('.scatterlayer .point').length,
  };
}"""


@pytest.fixture
def lab_notebooks(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    yield from serve(tmp_path, root)


def test_notebook_09_run_all_as_a_learner_sees_it(lab_notebooks, tmp_path):
    if not has_vllm():
        if os.environ.get("NANOVLLM_REQUIRE_VLLM"):
            pytest.fail(f"NANOVLLM_REQUIRE_VLLM is set but {vllm_python()} cannot import vllm")
        pytest.skip(f"needs vLLM: {vllm_python()} cannot import vllm (README, 'A real vLLM')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{lab_notebooks}/lab/tree/notebooks/{NAME}.ipynb?reset")
            wait_until(page, lambda: page.evaluate(KERNEL_STATUS) == "idle", 120, "a kernel")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_timeout(2000)
            state = wait_until(
                page, lambda: (st := page.evaluate(NOTEBOOK_STATE))["done"] and st, 500, "Run All"
            )
            assert not state["errors"], state["errors"]
            page.wait_for_timeout(3000)  # the last frames drawn
            assert page.get_by_text("Error displaying widget").count() == 0
            plots = page.evaluate(BLANK_PLOTS)
            assert not plots["blank"], plots
            watch = page.evaluate(WATCH_STATE)
            print(f"{plots['count']} plotly figures drawn, none blank; the watch: {watch}")
            assert "closed" in watch["status"]  # the last cell closed it; its views stay drawn
            assert watch["fills"] and set(watch["fills"]) == {UNKNOWN_FILL}, watch
            assert watch["evicted"] >= 4, watch
            hover_a_frozen_node(page, tmp_path)
            for view in WATCH_VIEWS:
                shot = tmp_path / f"watch_{view}.png"
                page.locator(f".nanovllm-watch .nanovllm-view-{view}").first.screenshot(path=shot)
                shutil.copyfile(shot, f"/tmp/watch_{view}.png")
            screens(page, tmp_path)
        except BaseException:
            report_failure(page, tmp_path)
            raise
        finally:
            browser.close()


def hover_a_frozen_node(page, tmp_path: Path) -> None:
    """The frozen tree of the shared prompt (notebook cell 5): a branch's hover says its text."""
    plot = page.locator(".js-plotly-plot", has_text="6 stored blocks, 1 chain").first
    in_view(page, plot)
    box = plot.locator(".scatterlayer .trace:last-child .point").last.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # plotly's
    page.wait_for_timeout(500)  # drag layer is on top: a pointer move, not a hover on the node
    label = plot.locator(".hoverlayer .hovertext").first.text_content()
    print("hover:", label)
    assert "no block id" in label and "tokens: " in label and "block 2 of its chain" in label
    plot.screenshot(path=str(tmp_path / "watch_tree_hover.png"))
    shutil.copyfile(tmp_path / "watch_tree_hover.png", "/tmp/watch_tree_hover.png")


def in_view(page, locator, tries: int = 10) -> None:
    """Scroll ``locator`` to the middle of the window, again until it stays there: JupyterLab's
    windowed notebook renders the cells around it as they come into view, and their heights move
    it (one scroll left the frozen tree below the window)."""
    height = page.viewport_size["height"]
    for _ in range(tries):
        locator.evaluate("el => el.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(500)
        box = locator.bounding_box()
        if box and box["y"] >= 0 and box["y"] + box["height"] <= height:
            return
    raise AssertionError(f"could not scroll {locator} into the window: {box}")


def screens(page, tmp_path: Path) -> None:
    """The whole notebook, a screenshot per screen, saved to /tmp."""
    scroller = ".jp-WindowedPanel-outer"
    height = page.evaluate(f"document.querySelector('{scroller}').scrollHeight")
    shown = page.evaluate(f"document.querySelector('{scroller}').clientHeight")
    for k, top in enumerate(range(0, height, max(shown - 60, 200))):  # screens overlap a little
        page.evaluate(f"document.querySelector('{scroller}').scrollTop = {top}")
        page.wait_for_timeout(700)
        page.screenshot(path=str(tmp_path / f"{NAME}_{k}.png"))
        shutil.copyfile(tmp_path / f"{NAME}_{k}.png", f"/tmp/notebook_{NAME}_{k}.png")
