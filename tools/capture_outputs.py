#!/usr/bin/env python3
"""Capture the user-visible output of xensim's commands, to compare two trees.

    python tools/capture_outputs.py OUTDIR            # run every command, write OUTDIR/NAME.txt
    python tools/capture_outputs.py --compare A B     # list the outputs that differ

Run it once on the tree before a change and once after (each with that tree first on
``PYTHONPATH``); a change that is meant to keep behaviour must leave every file equal.
Wall-clock figures (seconds, rates) are masked; everything else is compared byte for byte.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch", "none"]

#: wall-clock figures that legitimately differ from run to run
_TIMING = [
    (re.compile(r"\d[\d,]*(\.\d+)? ?(s|ms|us|µs)\b(?! of)"), "<time>"),
    (re.compile(r"\d[\d,]*(\.\d+)? (steps|calls|schedules|points)/s"), "<rate>"),
    (re.compile(r"\(\d[\d,]*(\.\d+)?/s\)"), "(<rate>)"),
]


def commands() -> dict[str, list[str]]:
    cmds: dict[str, list[str]] = {}
    for cfg in sorted((ROOT / "configs").glob("*.yaml")):
        cmds[f"run-{cfg.stem}"] = ["run", str(cfg), "--quiet", "--format", "json"]
        cmds[f"run-{cfg.stem}-table"] = ["run", str(cfg), "--quiet"]
    small = str(ROOT / "tests" / "data" / "trace-small.yaml")
    default = str(ROOT / "configs" / "default.yaml")
    for d in DESIGNS:
        for level in ("hypercall", "superpage", "frame"):
            cmds[f"trace-small-{d}-{level}"] = ["trace", small, "--design", d, "--level", level]
        cmds[f"trace-default-{d}"] = ["trace", default, "--design", d, "--level", "frame",
                                      "--limit", "60", "--all-frames"]
        cmds[f"inspect-domain-{d}"] = ["inspect", default, "--design", d, "--domain", "web",
                                       "--format", "json"]
        for mfn in ("0x200", "0x40000", "0x4a123"):
            cmds[f"inspect-mfn{mfn}-{d}"] = ["inspect", default, "--design", d, "--mfn", mfn,
                                            "--steps", "150"]
        cmds[f"inspect-sp-{d}"] = ["inspect", default, "--design", d, "--superpage", "db:0"]
        for sc in sorted((ROOT / "scenarios").glob("*.yaml")):
            cmds[f"explore-{sc.stem}-{d}"] = ["explore", str(sc), "--design", d,
                                              "--max-schedules", "60"]
        for seed in (1, 2):
            cmds[f"fuzz-{d}-{seed}"] = ["fuzz", "--design", d, "--calls", "700",
                                        "--seed", str(seed)]
    cmds["fuzz-xen41-faithful"] = ["fuzz", "--design", "xen-4.1", "--faithful", "--calls",
                                   "700", "--seed", "5"]
    for v in ("4.1", "4.5", "4.7"):
        cmds[f"fuzz-v{v}"] = ["fuzz", "--version", v, "--calls", "500", "--seed", "7"]
    return cmds


def scrub(text: str) -> str:
    for pattern, repl in _TIMING:
        text = pattern.sub(repl, text)
    return text


def run_one(name: str, args: list[str], out: Path) -> None:
    env = dict(os.environ, COLUMNS="120")
    p = subprocess.run([sys.executable, "-m", "xensim", *args], capture_output=True,
                       text=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    body = f"$ xensim {' '.join(a.replace(str(ROOT) + '/', '') for a in args)}\n"
    body += f"exit {p.returncode}\n--- stdout\n{scrub(p.stdout)}--- stderr\n{scrub(p.stderr)}"
    (out / f"{name}.txt").write_text(body.replace(str(ROOT) + "/", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="a regular expression: capture only matching names")
    a = ap.parse_args()
    if a.compare:
        A, B = (Path(x) for x in a.compare)
        a_names = {p.name for p in A.glob("*.txt")}
        b_names = {p.name for p in B.glob("*.txt")}
        names = sorted(a_names & b_names)
        bad = [n for n in names if (A / n).read_text() != (B / n).read_text()]
        for n in bad:
            print("differs:", n)
        print(f"{len(names) - len(bad)} equal, {len(bad)} differ"
              f" ({len(a_names ^ b_names)} captured on one side only)")
        return 1 if bad else 0
    if not a.out:
        ap.error("OUTDIR or --compare A B")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmds = {k: v for k, v in commands().items() if not a.only or re.search(a.only, k)}
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda kv: run_one(kv[0], kv[1], out), cmds.items()))
    print(f"{len(cmds)} outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
