"""Running a sweep: the points directory, resumption, the engine, and the results
(``results.csv`` through the one renderer, ``results.parquet`` when pyarrow is
installed, the summary tables).

``DIR/points/ID/`` holds a point's resolved config (``config.yaml``) and, once it
ran, its ``results.json`` (``xensim run``'s results, with a ``point`` object first:
its id, grid values, wall and CPU time, peak RSS and worker). A point whose results.json is
there is complete and is not run again (unless ``force``); each is written whole as
it comes back, under ``sigint_deferred``, so a Ctrl-C loses only the points in
flight. The points are submitted the longest first (by their operations), so that
the last to finish is a short one. ``results.csv`` has one row per point and design, in the grid's order and the
designs' (whatever the engine and the order the points completed in): ``point``,
the grid keys, ``design``, then the comparison's figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigError
from ..config import dump_resolved
from ..engines import Engine, TaskFailed
from ..mem import format_size
from ..output import Column, Progress, Table, plural, render, sigint_deferred, write_atomic
from ..sim import fmt_ns
from ._file import Sweep, describe_values, grid_cell
from ._point import point_cost, point_id, point_task, run_point

__all__ = ["FIGURES", "PointRun", "SweepResult", "SweepInterrupted", "run_sweep",
           "points_to_run", "design_row", "write_parquet"]

#: what results.json's ``point`` object says of the run (besides id, index and grid)
_POINT_INFO = ("seconds", "cpu_seconds", "peak_rss_bytes", "worker")

#: results.csv's figures per design, after ``point``, the grid keys and ``design``
FIGURES = ("status", "ops", "ops_failed", "guest_errors", "mappings", "hypercalls",
           "hypercall_errors", "get_page", "put_page", "get_page_type", "put_page_type",
           "slow_get", "slow_put", "fast_get", "fast_put", "slow_transitions", "slow_per_op",
           "fast_updates", "tlb_flushes", "entry_fast_path", "entry_slow_path",
           "metadata_bytes", "metadata_percent", "modelled_ns", "ns_per_op", "audit",
           "leaked_frames", "ops_digest", "release")


@dataclass
class PointRun:
    """A point of the sweep and what became of it."""
    index: int
    id: str
    values: dict
    #: ran, resumed (complete in DIR already), failed, config-error, or pending
    state: str = "pending"
    #: the point's results.json (its ``point`` object, then ``xensim run``'s results)
    results: dict | None = None
    error: str | None = None

    @property
    def info(self) -> dict:
        return (self.results or {}).get("point", {})


def design_row(d: dict) -> dict:
    """A design's figures (a ``comparison.designs`` object of results.json) as a row."""
    sp, refs, model = d.get("superpage", {}), d.get("refcount", {}), d.get("model") or {}
    audit = d.get("audit", {})
    row = {k: d.get(k) for k in ("status", "ops", "ops_failed", "guest_errors", "mappings",
                                 "slow_transitions", "slow_per_op", "fast_updates",
                                 "tlb_flushes", "ops_digest")}
    row.update({k: refs.get(k) for k in ("get_page", "put_page", "get_page_type",
                                         "put_page_type")})
    row.update({k: sp.get(k) for k in ("slow_get", "slow_put", "fast_get", "fast_put")})
    hc = d.get("hypercalls", {})
    teardown = d.get("teardown", {})
    row.update(hypercalls=hc.get("calls"), hypercall_errors=sum(hc.get("errors", {}).values()),
               entry_fast_path=d.get("entry_updates", {}).get("fast_path"),
               entry_slow_path=d.get("entry_updates", {}).get("slow_path"),
               metadata_bytes=d.get("metadata", {}).get("bytes"),
               metadata_percent=d.get("metadata", {}).get("percent_of_ram"),
               modelled_ns=model.get("ns"), ns_per_op=model.get("ns_per_op"),
               leaked_frames=teardown.get("leaked_frames"), release=d.get("release"))
    if d.get("status") != "ok":
        row["audit"] = d.get("status")
    elif not audit.get("ok", True):
        row["audit"] = f"{audit.get('differences')} diff"
    else:
        row["audit"] = "leak" if teardown.get("leaked_frames") or teardown.get(
            "zombie_domains") else "clean"
    return {k: row[k] for k in FIGURES}


@dataclass
class SweepResult:
    """A sweep's outcome: every point (complete or not) in the grid's order."""
    source: str
    keys: list[str]
    points: list[PointRun]
    engine: str = ""
    out: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: results.csv (or .parquet) could not be written: why (the points' files are kept)
    write_error: OSError | None = None

    def rows(self) -> list[dict]:
        """One row per complete point and design, in the grid's order."""
        out = []
        for p in self.points:
            if p.results is None:
                continue
            for d in p.results.get("comparison", {}).get("designs", []):
                row = {"point": p.id, **{k: grid_cell(v) for k, v in p.values.items()},
                       "design": d["design"]}
                row.update(design_row(d))
                out.append(row)
        return out

    def count(self, state: str) -> int:
        return sum(p.state == state for p in self.points)

    @property
    def failed(self) -> list[PointRun]:
        return [p for p in self.points if p.state in ("failed", "config-error")]

    @property
    def crashed(self) -> list[tuple[PointRun, str]]:
        return [(p, d["design"]) for p in self.points if p.results
                for d in p.results.get("comparison", {}).get("designs", [])
                if d.get("status") != "ok"]

    def to_dict(self) -> dict:
        return {"sweep": self.source, "keys": self.keys, "rows": self.rows(),
                "points": [{"id": p.id, "values": p.values, "state": p.state,
                            "error": p.error, **{k: p.info.get(k) for k in _POINT_INFO}}
                           for p in self.points]}

    def csv_tables(self) -> list[Table]:
        """results.csv: every figure, plain values."""
        cols = ["point", *self.keys, "design", *FIGURES]
        return [Table("results", [Column(k, k) for k in cols], self.rows())]

    def tables(self) -> list[Table]:
        grid = [Column(k, k, lambda v: str(v), "<") for k in self.keys]
        summary = Table(
            f"Sweep {self.source}: {plural(len(self.points), 'point')} on each design", [
                Column("point", "point", align="<"), *grid,
                Column("design", "design", align="<"),
                Column("ops", "ops", lambda v: f"{v:,}"),
                Column("ops_failed", "failed", lambda v: f"{v:,}"),
                Column("slow_get", "0->1", lambda v: f"{v:,}"),
                Column("slow_put", "1->0", lambda v: f"{v:,}"),
                Column("slow_per_op", "slow/op", lambda v: f"{v:.4g}"),
                Column("ns_per_op", "modelled/op", fmt_ns),
                Column("audit", "audit", align="<")],
            self.rows(), self.notes)
        runs = Table("Points", [
            Column("point", "point", align="<"), *grid,
            Column("state", "state", align="<"),
            Column("seconds", "wall", lambda v: f"{v:.2f} s"),
            Column("cpu_seconds", "CPU", lambda v: f"{v:.2f} s"),
            Column("peak_rss_bytes", "peak RSS", format_size),
            Column("worker", "worker", align="<")],
            [{"point": p.id, **{k: grid_cell(v) for k, v in p.values.items()}, "state": p.state,
              **{k: p.info.get(k) for k in _POINT_INFO}}
             for p in self.points],
            [f"{p.id}: {p.state}: {p.error}" for p in self.failed])
        return [summary, runs]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the result so far (the points done are kept in DIR)."""

    def __init__(self, result: SweepResult):
        super().__init__(result)
        self.result = result


def _complete(path: Path, pid: str) -> dict | None:
    """The point's results.json if it is there and its own, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("point", {}).get("id") == pid else None


def points_to_run(sweep: Sweep, out: Path, force: bool = False) -> int:
    """How many of the points of ``sweep`` :func:`run_sweep` would run: those not
    complete in ``out`` (all with ``force``). Reads, writes nothing."""
    ids = {point_id(point) for point in sweep.points}
    if force:
        return len(ids)
    return sum(_complete(out / "points" / pid / "results.json", pid) is None for pid in ids)


def run_sweep(sweep: Sweep, out: Path, engine: Engine, force: bool = False,
              progress: Progress | None = None) -> SweepResult:
    """Run the points of ``sweep`` not complete in ``out`` (all with ``force``) on
    ``engine``; write each point's files as it completes, then results.csv (and
    results.parquet). Ctrl-C: :class:`SweepInterrupted` (results.csv not written). A
    results file that cannot be written is the result's ``write_error`` (the caller
    prints the summary first)."""
    progress = progress or Progress.off()
    runs, todo, tasks = [], {}, []
    seen: dict[str, PointRun] = {}
    for point in sweep.points:
        pid = point_id(point)
        pr = PointRun(point.index, pid, point.values)
        if pid in seen:
            raise ConfigError(sweep.source, "grid", f"two points are the same config: "
                                                    f"{describe_values(seen[pid].values)} and "
                                                    f"{describe_values(pr.values)}")
        seen[pid] = pr
        runs.append(pr)
        pdir = out / "points" / pid
        done = None if force else _complete(pdir / "results.json", pid)
        if done is not None:
            pr.state, pr.results = "resumed", done
            continue
        pdir.mkdir(parents=True, exist_ok=True)
        dump_resolved(point.config, point.memmap, pdir / "config.yaml")
        todo[pid] = (pr, pdir)
        tasks.append((-point_cost(point), point.index, point_task(point, pid)))
    tasks = [t for _, _, t in sorted(tasks, key=lambda t: t[:2])]      # the longest first
    result = SweepResult(sweep.source, sweep.keys, runs, engine.describe(), out)
    progress.start("sweep", len(tasks), unit="points")
    finished = 0
    gen = engine.map_unordered(run_point, tasks)
    try:
        for task, got in gen:
            pr, pdir = todo[task["id"]]
            if isinstance(got, TaskFailed):
                pr.state, pr.error = "failed", str(got)
            elif "config_error" in got:
                pr.state, pr.error = "config-error", got["config_error"]
            else:
                point = {"id": pr.id, "index": pr.index, "grid": pr.values,
                         **{k: got[k] for k in _POINT_INFO}}
                pr.results = {"point": point, **got["results"]}
                with sigint_deferred():
                    write_atomic(pdir / "results.json", json.dumps(pr.results, indent=2) + "\n")
                    pr.state = "ran"
            finished += 1
            progress.update(finished)
    except KeyboardInterrupt:
        progress.close()
        result.notes.append(_counts(result, len(tasks)))
        raise SweepInterrupted(result) from None
    finally:
        gen.close()
    progress.close()
    result.notes.append(_counts(result, len(tasks)))
    try:
        with sigint_deferred():
            write_atomic(out / "results.csv", render(result, "csv"))
            if write_parquet(result.rows(), out / "results.parquet"):
                result.notes.append(f"wrote {out / 'results.csv'} and {out / 'results.parquet'}")
            else:
                result.notes.append(f"wrote {out / 'results.csv'} (no results.parquet: "
                                    f"pyarrow is not installed)")
    except OSError as e:
        result.write_error = e
        result.notes.append(f"results.csv not written (the points' files are in "
                            f"{out / 'points'})")
    return result


def _counts(result: SweepResult, to_run: int) -> str:
    ran, resumed = result.count("ran"), result.count("resumed")
    failed = len(result.failed)
    return (f"{len(result.points)} points: {ran} ran, {resumed} already complete"
            + (f", {failed} failed" if failed else "")
            + (f", {to_run - ran - failed} not run" if ran + failed < to_run else "")
            + f" ({result.engine})")


def write_parquet(rows: list[dict], path: Path) -> bool:
    """Write ``rows`` as Parquet (atomically) if pyarrow is installed -> written?"""
    if importlib.util.find_spec("pyarrow") is None:
        return False
    import pyarrow as pa
    import pyarrow.parquet as pq
    columns = {k: None for r in rows for k in r}
    mixed = {k for k in columns if not _one_type(r.get(k) for r in rows)}
    rows = [{k: (str(r.get(k)) if k in mixed and r.get(k) is not None else r.get(k))
             for k in columns} for r in rows]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _one_type(values) -> bool:
    """Can a Parquet column hold these (one type, ints among floats, None anywhere)?
    A grid key whose values are of several types is written as text."""
    kinds = {type(v) for v in values if v is not None}
    return kinds <= {int, float} or len(kinds) <= 1
