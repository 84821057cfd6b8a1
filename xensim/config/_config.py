"""Config files: loading and checking one (``load_config``, ``parse_config``), the
built-in default, and resolving the machine's memory map (a preset, an inline
map or a memory-map file) into a MemoryMap.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import ConfigError
from ..designs import load_design_file
from ..mem import MemoryMap, MemoryMapError
from ._files import load_memmap_file, map_error
from ._loader import Loader, top_mapping
from ._presets import DEFAULT_PRESET, load_preset
from ._schema import Config, check_simulation
from ._yamlsrc import YamlDoc, load_yaml, read_text

__all__ = ["load_config", "parse_config", "config_from_data", "default_config",
           "default_config_path", "build_memory_map", "read_design_files"]


def _file_dir(filename: str | None) -> Path:
    """The directory a file's relative paths are relative to (a text's: the current one)."""
    if filename and not filename.startswith("<"):
        return Path(filename).parent
    return Path(".")


def read_design_files(loader: Loader, data: dict, filename: str) -> list[str] | None:
    """Load the design files a config (or a scenario) lists under ``design_files:``
    (paths relative to its file) before its design names are checked; their resolved
    absolute paths, which the loaded object keeps (None: no such key). A bad entry is a
    ConfigError at ``design_files[i]`` carrying the design file's own one-line error."""
    if data.get("design_files") is None:
        return None
    paths = loader.convert(data["design_files"], list[str], ("design_files",),
                           ("design_files",))
    out = []
    for i, given in enumerate(paths):
        path = Path(given).expanduser()
        full = path if path.is_absolute() else _file_dir(filename) / path
        try:
            load_design_file(full)
        except ConfigError as e:
            raise ConfigError(filename, f"design_files[{i}]", str(e),
                              loader.line(("design_files", i))) from None
        out.append(str(full.resolve()))
    return out


def parse_config(text: str, filename: str = "<string>") -> Config:
    """Parse config text; ``filename`` is used in errors and to find a memory_map_file."""
    doc = load_yaml(text, filename)
    data = top_mapping(doc, filename, "of sections such as machine: and hypervisor:")
    return config_from_data(doc, filename, data)


def config_from_data(doc: YamlDoc, filename: str, data: dict) -> Config:
    """A config from YAML data already loaded (a sweep's point: its base with the grid's
    values set); ``doc`` gives the lines of its keys (``doc.lines``, ``doc.raw``)."""
    loader = Loader(doc, filename)
    files = read_design_files(loader, data, filename)
    cfg = loader.load_dataclass(Config, data, (), ())
    cfg.design_files = files
    cfg.source = filename
    cfg.key_lines = loader.key_lines
    check_simulation(cfg, filename)
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    """Load and check a config file. A file with no keys (empty, or only comments) is a
    ConfigError: a user who names a file means something by it."""
    text = read_text(path)
    if load_yaml(text, str(path)).data is None:
        raise ConfigError(str(path), None, "the config is empty (no keys): give at least one "
                          "section such as machine: or workload:; `xensim run` without a file "
                          "runs the default comparison")
    return parse_config(text, str(path))


def default_config_path() -> Path:
    """``configs/default.yaml`` of the source tree the package lives in."""
    return Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def default_config() -> Config:
    """The built-in default config (the teaching machine); plain defaults if the file is gone."""
    path = default_config_path()
    if path.is_file():
        return load_config(path)
    cfg = Config()
    cfg.machine.preset = DEFAULT_PRESET
    return cfg



def build_memory_map(cfg: Config) -> MemoryMap:
    """Resolve the machine's preset, inline map or memory_map_file into a MemoryMap."""
    m = cfg.machine
    lines = cfg.key_lines
    if m.memory_map is not None:
        ranges = [(r.start, r.end, r.type) for r in m.memory_map]
        try:
            mm = MemoryMap(ranges, name=m.name or "custom", source=m.source)
        except MemoryMapError as exc:
            raise map_error(exc, cfg.source, "machine", [("memory_map", len(ranges))],
                             lines, lines.get("machine")) from None
    elif m.memory_map_file is not None:
        file = Path(m.memory_map_file).expanduser()
        resolved = file if file.is_absolute() else _file_dir(cfg.source) / file
        if not resolved.exists():
            raise ConfigError(cfg.source, "machine.memory_map_file",
                              f"no such file: {resolved}", lines.get("machine.memory_map_file"))
        mm = load_memmap_file(resolved)
    else:
        try:
            mm = load_preset(m.preset or DEFAULT_PRESET)
        except ConfigError as exc:
            if exc.path != "machine.preset":
                raise
            raise ConfigError(cfg.source, exc.path, exc.message,
                              lines.get("machine.preset")) from None
    if m.name is not None:
        mm.name = m.name
    if m.source is not None:
        mm.source = m.source
    return mm
