"""The reproducer format: a violating call list as an ordinary config file.

:func:`to_script_yaml` writes ``design_files:`` (a user design's file, absolute),
``machine:``, ``hypervisor:`` and ``workload: {kind: script, ops: [...]}`` (each op one hypercall, the schema of
xensim.config's HypercallOp) with the YAML library: MFNs, PTEs and addresses as
``0x...``, comments (what was found, each call's rc) around the data. Such a file
loads with ``load_config`` like any config; ``xensim run FILE`` replays it with every
check (:func:`replay_config`), and :func:`load_script` gives back the same ops.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import yaml

from ..config import Config, HypercallOp, load_config, parse_config
from ..mem import MemoryMap
from ..xen import errno_name
from ._checks import FuzzViolation
from ._runner import replay_ops
from ._setup import Setup

__all__ = ["to_script_yaml", "script_ops", "load_script", "Replay", "replay_config", "replay"]

#: the order of an op's keys in a written file (HypercallOp's fields): writing a loaded
#: reproducer again gives the same text
_KEY_ORDER = {f.name: i for i, f in enumerate(dataclasses.fields(HypercallOp))}
#: keys whose ints are written in hex (addresses, PTEs, MFNs), besides reqs and ops
_HEX_KEYS = ("va", "val", "frame")


class _Hex(int):
    """An int written as ``0x...``."""


class _Flow(list):
    """A list written on one line (``[0x1000, 0x2067]``)."""


class _FlowMap(dict):
    """A mapping written on one line (one op)."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper with :class:`_Hex`, :class:`_Flow` and :class:`_FlowMap`."""


_Dumper.add_representer(_Hex, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int",
                                                              f"{int(v):#x}"))
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                 flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map",
                                                                   v, flow_style=True))


def _data(v, hexa: bool):
    if isinstance(v, (list, tuple)):
        return _Flow(_data(x, hexa) for x in v)
    if hexa and isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return _Hex(v)
    return v


def _op_data(op: dict) -> _FlowMap:
    out = _FlowMap()
    for k in sorted(op, key=lambda k: _KEY_ORDER.get(k, len(_KEY_ORDER))):
        hexa = k in _HEX_KEYS or k in ("reqs", "ops", "extents", "grants") and op["op"] != "memory_op" \
            or k == "extents" and op.get("cmd") == "decrease_reservation"
        out[k] = _data(op[k], hexa)
    return out


def to_script_yaml(setup: Setup, ops: list[dict], *, rcs: list | None = None,
                   comment: str | None = None) -> str:
    """A config file (machine, hypervisor, ``workload: {kind: script, ops: [...]}``)
    replaying ``ops``; ``comment`` goes on top, ``rcs`` (what each call returned) are
    written as a comment after each call."""
    cfg = setup.config()
    data = {"design_files": cfg["design_files"]} if "design_files" in cfg else {}
    data |= {"machine": {"memory_map": [_data(r, True) for r in cfg["machine"]["memory_map"]],
                        "pdx": cfg["machine"]["pdx"]},
            "hypervisor": cfg["hypervisor"],
            "workload": {"kind": "script", "ops": [_op_data(op) for op in ops]}}
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=float("inf"), allow_unicode=True).splitlines()
    # the ops are the last lines, one each
    first = len(body) - len(ops)
    for i in range(len(ops)):
        rc = rcs[i] if rcs is not None and i < len(rcs) else None
        if rc is not None:
            body[first + i] += f"   # rc {int(rc)}" + (f" ({errno_name(rc)})" if rc < 0 else "")
    lines = [f"# {c}".rstrip() for c in (comment or "").splitlines()]
    lines.append("# replay: xensim run FILE")
    return "\n".join(lines + body) + "\n"


def script_ops(cfg: Config) -> list[dict] | None:
    """The raw hypercalls of a config (a ``script`` workload with ``ops``: a reproducer),
    as the fuzzer's op dicts; None for any other config."""
    wl = cfg.workload
    if wl is None or wl.kind != "script" or wl.ops is None:
        return None
    return [op.as_dict() for op in wl.ops]


def load_script(path_or_text) -> tuple[Setup, list[dict]]:
    """(setup, ops) of a reproducer file (or its text). A ConfigError if it is not a
    valid config; ValueError if it has no hypercall ``ops``."""
    if isinstance(path_or_text, os.PathLike) or "\n" not in str(path_or_text):
        cfg = load_config(path_or_text)
    else:
        cfg = parse_config(path_or_text)
    ops = script_ops(cfg)
    if ops is None:
        raise ValueError("not a script workload of hypercalls (workload: {kind: script, "
                         "ops: [...]})")
    return Setup.from_config(cfg), ops


@dataclass
class Replay:
    """What replaying a script gave: the first violation (or None) and every call's rc."""
    violation: FuzzViolation | None
    rcs: list
    calls: int
    #: the rc of the script's last call (before the teardown's), None if it has none
    last: int | None = None

    def __str__(self) -> str:
        if self.violation is None:
            last = self.last
            if last is None or last >= 0:
                return f"replayed {self.calls} calls: no violation"
            # the script's last call refused (an XTF verdict's -EINVAL): said
            return (f"replayed {self.calls} calls: no violation; the last returned {int(last)} "
                    f"({errno_name(last)})")
        return f"replayed {self.calls} calls: {self.violation}"


def replay_config(cfg: Config, memmap: MemoryMap | None = None, *,
                  finish: bool = True) -> Replay:
    """Replay a reproducer's config (:func:`script_ops`) on its machine (``memmap``, else
    the config's own) with every check; ``finish``: then the teardown checks."""
    ops = script_ops(cfg)
    if ops is None:
        raise ValueError("not a script workload of hypercalls")
    v, run = replay_ops(Setup.from_config(cfg, memmap), ops, finish=finish)
    return Replay(v, run.rcs, run.calls, _last(run.rcs, ops))


def replay(yaml_path, *, finish: bool = True) -> Replay:
    """Replay a reproducer file written by :func:`to_script_yaml`, with every check."""
    setup, ops = load_script(yaml_path)
    v, run = replay_ops(setup, ops, finish=finish)
    return Replay(v, run.rcs, run.calls, _last(run.rcs, ops))


def _last(rcs: list, ops: list) -> int | None:
    return rcs[len(ops) - 1] if ops and len(rcs) >= len(ops) else None
