"""``shoal.progress(futures)``: a progress bar in a terminal or a notebook."""

from __future__ import annotations

import sys
import time


def _notebook_bar():
    try:
        from IPython import get_ipython

        if get_ipython() is None or "IPKernelApp" not in get_ipython().config:
            return None
        import ipywidgets

        return ipywidgets
    except Exception:  # noqa: BLE001
        return None


def progress(futures, interval: float = 0.1, file=None, notebook=None, timeout: float | None = None) -> None:
    """Show how many of ``futures`` are done until all are (or ``timeout`` passes)."""
    futures = list(futures)
    total = len(futures)
    widgets = _notebook_bar() if notebook is not False else None
    bar = None
    if widgets is not None:
        from IPython.display import display

        bar = widgets.IntProgress(min=0, max=max(total, 1), description="shoal")
        display(bar)
    out = file or sys.stderr
    start = time.monotonic()
    while True:
        done = sum(1 for f in futures if f.done())
        errs = sum(1 for f in futures if f.status in ("error", "cancelled", "lost"))
        elapsed = time.monotonic() - start
        if bar is not None:
            bar.value = done
            bar.bar_style = "danger" if errs else ("success" if done == total else "")
        else:
            width = 40
            filled = int(width * done / total) if total else width
            text = f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} done"
            if errs:
                text += f", {errs} failed"
            out.write(text + f" | {elapsed:.1f} s")
            out.flush()
        if done == total or (timeout is not None and elapsed > timeout):
            break
        time.sleep(interval)
    if bar is None:
        out.write("\n")
        out.flush()
