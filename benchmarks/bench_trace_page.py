"""Trace page figures: a page of 10,000 steps (hypercalls) against the text trace of the
same run.

The run is configs/default.yaml's random workload made 10,000 operations long, on its first
design (per-mapping). Measured in one run: the text trace (``xensim trace --level frame``, the
baseline) and the page (``xensim trace --html``): the seconds to make each and its size; then
Chromium headless loading each from file:// (the text as a plain .txt file), 3 times: the
wall time of the whole browser (start, load, dump, exit) and, for the page, the time its script
reports from the start of navigation to the page drawn (``data-load-ms``). Goals: the page
under 10 MB, drawn in under 2 s.

Run: nice -n 10 python benchmarks/bench_trace_page.py [--steps N]   (needs chromium)
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from xensim.pages import record_trace, write_trace_page
from xensim.teach import TraceWriter, load, trace

ROOT = Path(__file__).resolve().parent.parent


def chromium(tmp: Path, url: str) -> tuple[float, str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found (Debian: apt-get install chromium)")
    t = time.perf_counter()
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,1000",
                        "--dump-dom", url], capture_output=True, timeout=120)
    return time.perf_counter() - t, p.stdout.decode("utf-8", "replace")


def spread(xs: list[float], unit: str = "s", scale: float = 1.0) -> str:
    xs = [x * scale for x in xs]
    return f"{statistics.median(xs):.2f} {unit} (min {min(xs):.2f}, max {max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    n = ap.parse_args().steps
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg_path = tmp / "long.yaml"
        text = (ROOT / "configs" / "default.yaml").read_text()
        cfg_path.write_text(text.replace("steps: 300", f"steps: {n}"))
        cfg, mm = load(str(cfg_path))

        out: list[str] = []
        t = time.perf_counter()
        trace(cfg, mm, None, "frame", False, None, TraceWriter("text", out.append))
        t_text = time.perf_counter() - t
        txt = tmp / "trace.txt"
        txt.write_text("".join(out))

        t = time.perf_counter()
        run = record_trace(cfg, mm)
        page = tmp / "trace.html"
        size = write_trace_page(page, run)
        t_page = time.perf_counter() - t

        print(f"run: {n:,} operations of {cfg_path.name} on {run.recorder.design}; page: "
              f"{run.steps:,} steps" + (f" (cut: {run.recorder.cut})" if run.recorder.cut else ""))
        print(f"  text trace (baseline): {t_text:7.1f} s to make, {txt.stat().st_size / 1e6:6.2f} MB")
        print(f"  trace page:            {t_page:7.1f} s to make, {size / 1e6:6.2f} MB  "
              f"({t_page / t_text:.2f}x the time, {size / txt.stat().st_size:.2f}x the size)")
        walls_txt, walls_page, drawn = [], [], []
        for _ in range(3):
            w, _dom = chromium(tmp, txt.as_uri())
            walls_txt.append(w)
            w, dom = chromium(tmp, page.as_uri() + "#step=5000")
            walls_page.append(w)
            m = re.search(r'data-load-ms="(\d+)"', dom)
            drawn.append(int(m.group(1)) / 1e3 if m else float("nan"))
        print("  Chromium headless, 3 loads each (wall: browser start to exit):")
        print(f"    text trace (.txt): wall {spread(walls_txt)}")
        print(f"    trace page:        wall {spread(walls_page)}, drawn after {spread(drawn)} "
              f"(goal < 2 s); {statistics.median(walls_page) / statistics.median(walls_txt):.2f}x "
              "the text's wall time")
        print(f"  size goal < 10 MB: {'met' if size < 10e6 else 'NOT met'}; drawn goal < 2 s: "
              f"{'met' if max(drawn) < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
