"""Machine presets: the memory maps in ``configs/machines/<name>.yaml``.

Each preset file is in xensim's memory-map format (``name``, ``source``,
``ram: [[start, end], ...]``, optional ``other: [[start, end, type], ...]``).
``teaching`` is the small machine used by default everywhere.
"""

from __future__ import annotations

from pathlib import Path

from .._errors import ConfigError
from ..mem import MemoryMap
from ._files import load_memmap_file

__all__ = ["DEFAULT_PRESET", "preset_dir", "list_presets", "load_preset"]

#: The preset used when a config names no memory map at all.
DEFAULT_PRESET = "teaching"


def preset_dir() -> Path:
    """``configs/machines`` of the source tree the package lives in (editable install)."""
    return Path(__file__).resolve().parents[2] / "configs" / "machines"


def list_presets() -> list[str]:
    """The preset names, sorted."""
    directory = preset_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml") if p.is_file())


def load_preset(name: str) -> MemoryMap:
    """The memory map of preset ``name``; ConfigError on ``machine.preset`` if unknown."""
    names = list_presets()
    if name not in names:
        shown = repr(name) if isinstance(name, str) else repr(str(name))
        raise ConfigError(None, "machine.preset",
                          f"unknown preset {shown}; choose from: {', '.join(names)}")
    return load_memmap_file(preset_dir() / f"{name}.yaml")
