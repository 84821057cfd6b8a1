"""What the machine commands share: their arguments, resolving them to a config and a
memory map (a preset, a memory-map file, or the config's own machine), and printing a
report of the booted machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Config, build_memory_map, default_config, load_config, \
    load_memmap_file, load_preset
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
    p.add_argument("--pdx", choices=("none", "mask", "offset"), help="PDX compression mode")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")


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
