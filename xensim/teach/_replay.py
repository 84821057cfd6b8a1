"""The run trace and inspect look at: a config's workload replayed on one design.

The run is the one ``xensim run`` makes for one design (the first of the config's
``compare`` list, or ``--design``): a fresh machine, the same set-up (domains
created, populated, page-table trees built), then the workload's operations in
order, each through the guest kernel's hypercalls.
"""

from __future__ import annotations

import dataclasses

from .._errors import ConfigError
from ..config import Config, build_memory_map, load_config
from ..guest import GuestError, GuestKernel, Workload, apply
from ..mem import MemoryMap
from ..xen import Machine


def load(config: str | None) -> tuple[Config, MemoryMap]:
    """A config file (or the built-in default) and its machine."""
    from ..config import default_config
    cfg = load_config(config) if config else default_config()
    return cfg, build_memory_map(cfg)


def pick_design(cfg: Config, design: str | None) -> str:
    """``design``, else the first design of the config's ``compare`` list (else its own)."""
    from ..designs import REGISTRY
    name = design or cfg.designs()[0]
    if name not in REGISTRY:
        raise ConfigError(None, "--design", f"unknown design {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return name


def boot(cfg: Config, memmap: MemoryMap, design: str
         ) -> tuple[Machine, dict[str, GuestKernel], Workload]:
    """A fresh machine on ``design``, set up exactly as ``xensim run`` sets it up
    (domains created, populated, page-table trees built and every table the
    workload uses created): (machine, kernels by domain name, workload)."""
    from ..sim._simulate import _setup
    from ..guest import DomainSpec, make_workload
    wl = make_workload(cfg.effective_workload(),
                       [DomainSpec(n, mem) for n, mem in cfg.domain_specs()])
    c = dataclasses.replace(cfg, hypervisor=dataclasses.replace(cfg.hypervisor, superpage=design))
    m = Machine.from_config(c, memmap)
    kernels = _setup(m, cfg, wl)
    return m, kernels, wl


def run_ops(kernels: dict[str, GuestKernel], wl: Workload, seed: int, limit: int | None = None,
            before=None, after=None) -> int:
    """Apply the workload's operations in order (the first ``limit``), as ``xensim run``
    does; ``before(i, op)`` / ``after(i, op, ok, error)`` are called around each.
    Returns the number of operations applied."""
    n = 0
    for op in wl.ops(seed):
        if limit is not None and n >= limit:
            break
        if before is not None:
            before(n, op)
        try:
            ok, err = apply(op, kernels[op.domain]), None
        except GuestError as e:
            ok, err = False, str(e)
        n += 1
        if after is not None:
            after(n - 1, op, ok, err)
    return n
