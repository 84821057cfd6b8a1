"""What the commands share: the machine commands' arguments, resolving them to a config
and a memory map (a preset, a memory-map file, or the config's own machine), printing a
report of the booted machine; ``--design-file`` (every command that takes a design),
whose files :func:`load_design_file_options` loads before any config is read; and the
engine options ``--workers`` / ``--scheduler`` (sweep, fuzz)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import ConfigError
from ..config import Config, build_memory_map, default_config, load_config, \
    load_memmap_file, load_preset
from ..designs import design_names, load_design_file
from ..mem import MemoryMap
from ..output import FORMATS, render


def machine_args(p: argparse.ArgumentParser,
                  config_help: str = "a YAML config (default: the built-in teaching machine)") -> None:
    """The machine arguments every machine command takes: CONFIG, --machine, --memmap,
    --pdx and --format."""
    p.add_argument("config", nargs="?", help=config_help)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--machine", metavar="PRESET", help="a machine preset (see `xensim presets`)")
    src.add_argument("--memmap", metavar="FILE",
                     help="your machine: a YAML memmap (ram: [[start, end], ...]), "
                          "a Linux boot log (BIOS-e820 lines) or /proc/iomem")
    p.add_argument("--pdx", choices=("none", "mask", "offset", "offset-4.21.0"), help="PDX compression mode")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")


def design_file_option(p: argparse.ArgumentParser) -> None:
    """``--design-file FILE.py`` (repeatable): a Python file of the user's own designs."""
    p.add_argument("--design-file", metavar="FILE.py", action="append", default=[],
                   dest="design_files",
                   help="load your own designs from this Python file before the config is "
                        "read (repeatable; docs/designs/writing-a-design.md)")


def engine_options(p: argparse.ArgumentParser, workers_help: str, scheduler_help: str) -> None:
    """``--workers N`` and ``--scheduler ADDRESS``: where a command's tasks run
    (xensim.engines' ``make_engine``)."""
    p.add_argument("--workers", type=int, metavar="N", help=workers_help)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help=f"{scheduler_help}; needs the cluster extra: pip install 'xensim[cluster]'")


def compare_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--compare a,b,...``: the designs to run, instead of ``what``'s ``compare``."""
    p.add_argument("--compare", metavar="DESIGN,...",
                   help=f"run these designs (comma-separated names) instead of {what}'s "
                        f"compare")


def compare_names(value: str) -> list[str]:
    """``--compare``'s names: registered designs (those of the config's design files too:
    call after loading it), each once; else the one-line ``--compare: ...`` error."""
    names = [n.strip() for n in value.split(",")]
    known = design_names()
    for i, name in enumerate(names):
        if not name:
            raise ConfigError(None, "--compare", f"an empty design name at position {i + 1} "
                                                 f"of {value!r}")
        if name not in known:
            raise ConfigError(None, "--compare", f"unknown design {name!r}; choose from "
                                                 f"{', '.join(known)}")
        if name in names[:i]:
            raise ConfigError(None, "--compare", f"design {name!r} is listed twice")
    return names


def load_design_file_options(args) -> None:
    """Load the ``--design-file`` files, in order (the CLI does it before running any
    command): a broken one is the one-line ``--design-file: FILE: reason`` error."""
    for path in getattr(args, "design_files", None) or ():
        try:
            load_design_file(path)
        except ConfigError as e:
            raise ConfigError(None, "--design-file", str(e)) from None


def resolve_machine(args) -> tuple[Config, MemoryMap]:
    """The config (CONFIG, else the default) and the memory map the arguments name."""
    cfg = load_config(args.config) if args.config else default_config()
    if args.machine:
        memmap = load_preset(args.machine)
        cfg.machine.preset, cfg.machine.memory_map, cfg.machine.memory_map_file = args.machine, None, None
    elif args.memmap:
        memmap = load_memmap_file(args.memmap)
        cfg.machine.preset, cfg.machine.memory_map = None, None
        cfg.machine.memory_map_file = str(Path(args.memmap).resolve())
    else:
        memmap = build_memory_map(cfg)
    if args.pdx:
        cfg.machine.pdx = args.pdx
    return cfg, memmap


def print_report(args, report) -> int:
    """Boot the machine the arguments name and print ``report(machine)`` in ``--format``."""
    from ..xen import Machine
    cfg, memmap = resolve_machine(args)
    sys.stdout.write(render(report(Machine(memmap, cfg.machine.pdx)), args.format))
    return 0
