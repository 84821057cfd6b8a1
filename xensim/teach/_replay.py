"""The run trace and inspect look at: a config's workload replayed on one design.

The run is the one ``xensim run`` makes for one design (the first of the config's
``compare`` list, or ``--design``): :func:`xensim.sim.start` boots a fresh machine
and sets it up the same way (domains created, populated, page-table trees built),
then its :meth:`~xensim.sim.Session.steps` apply the workload's operations in
order, each through the guest kernel's hypercalls.
"""

from __future__ import annotations

from .._errors import ConfigError
from ..config import Config, build_memory_map, default_config, load_config
from ..designs import design_names
from ..mem import MemoryMap
from ..sim import Session, start


def load(config: str | None) -> tuple[Config, MemoryMap]:
    """A config file (or the built-in default) and its machine."""
    cfg = load_config(config) if config else default_config()
    return cfg, build_memory_map(cfg)


def pick_design(cfg: Config, design: str | None) -> str:
    """``design``, else the first design of the config's ``compare`` list (else its own)."""
    name = design or cfg.designs()[0]
    if name not in design_names():
        raise ConfigError(None, "--design", f"unknown design {name!r}; choose from "
                                            f"{', '.join(sorted(design_names()))}")
    return name


def replay(cfg: Config, memmap: MemoryMap, design: str | None = None) -> Session:
    """The config's run on ``design`` (see :func:`pick_design`), set up, no operation
    applied yet: iterate its ``steps()``."""
    return start(cfg, memmap, pick_design(cfg, design))
