"""A sweep's point as a task: its identity, the task an engine runs, and the worker's
function (``run_point``).

A point's id is a hash of its resolved config (every default filled in, the memory
map spelled out: ``config.resolved_config``) and of its design files' contents, so
the same point has the same id in every sweep and every run: resumption finds it in
the points directory. The task is plain data (the resolved config); the worker
rebuilds the config from the data (which loads its design files, by absolute path;
no other file is read: the memory map is inline), runs the comparison on one
machine at a time (``sim.run_comparison``: each design on a fresh machine, dropped
before the next), and returns plain data: the run's results as ``xensim run``
writes them (``RunResult.to_dict``), the wall and CPU time, the worker's peak RSS during
the point and where it ran. A ConfigError the run finds (domains that do not fit
the machine) comes back as data too.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

from .._errors import ConfigError
from ..config import (SUPERPAGE_BYTES, YamlDoc, build_memory_map, config_from_data,
                      resolved_config, workload_ops)
from ..sim import RunResult, run_comparison
from ..xen import Machine
from ._file import Point

__all__ = ["point_id", "point_task", "point_cost", "run_point", "reset_peak_rss",
           "peak_rss_bytes"]

#: hex digits of a point's id
ID_DIGITS = 12


def point_id(point: Point) -> str:
    """The stable id of a point: a hash of its resolved config and of the contents of
    its design files (an edited design is a new point)."""
    h = hashlib.sha256(json.dumps(resolved_config(point.config, point.memmap), sort_keys=True,
                                  default=str).encode())
    for name in point.config.design_files or ():
        h.update(Path(name).read_bytes())
    return h.hexdigest()[:ID_DIGITS]


def point_task(point: Point, pid: str) -> dict:
    """What a worker gets: plain, picklable data (the design files as absolute paths
    in the config: a Dask worker needs them at the same path)."""
    return {"id": pid, "index": point.index,
            "config": resolved_config(point.config, point.memmap)}


def point_cost(point: Point) -> int:
    """The operations a point runs, all its designs together (counted without
    generating them): the order to submit points in, the longest first, so that the
    last to finish is a short one."""
    cfg = point.config
    ops, _ = workload_ops(cfg.effective_workload(),
                          [mem // SUPERPAGE_BYTES for _, mem in cfg.domain_specs()])
    return ops * len(cfg.designs())


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: ``/proc/self/clear_refs``), so that the
    next :func:`peak_rss_bytes` is the peak since now. False where it cannot be reset
    (the peak is then the process's so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's peak resident set size (``resource.getrusage``), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_point(task: dict) -> dict:
    """The worker's function: run one point's comparison -> plain data."""
    reset = reset_peak_rss()
    t0, cpu0 = time.perf_counter(), time.process_time()
    name = f"<sweep point {task['id']}>"
    out = {"id": task["id"], "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:                                     # design files: loaded by config_from_data
        cfg = config_from_data(YamlDoc(task["config"], name), name, task["config"])
        memmap = build_memory_map(cfg)
        comparison = run_comparison(cfg, memmap)
        out["results"] = RunResult.of(Machine(memmap, cfg.machine.pdx), comparison).to_dict()
    except ConfigError as e:
        out["config_error"] = e.message if e.path is None else f"{e.path}: {e.message}"
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - cpu0
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["peak_rss_reset"] = reset
    return out
