"""Configuration: the YAML source with line numbers, the typed loader, the
schema, memory-map files and the machine presets.
"""

from ._config import (
    Size, size, DESIGNS, RangeConfig, MachineConfig, HypervisorConfig, Config, MemmapFileConfig,
    DomainConfig, WorkloadConfig, MixConfig, ScriptOpConfig, CostModelConfig, WORKLOAD_KINDS,
    GUEST_OPS, check_simulation, load_config, parse_config, default_config, default_config_path,
    build_memory_map, load_memmap_file, resolved_config, dump_resolved, load_dataclass,
)
from ._hypercall_ops import (
    HYPERCALL_OPS, MEMORY_OP_CMDS, HYPERCALL_OP_KEYS, MmuRequest, MmuextRequest, HypercallOp,
)
from ._presets import (
    preset_dir, list_presets, load_preset,
)
from ._yamlsrc import (
    KeyPath, YamlDoc, load_yaml, read_text, format_path,
)

__all__ = [
    "Config", "CostModelConfig", "DESIGNS", "DomainConfig", "GUEST_OPS", "HYPERCALL_OPS",
    "HYPERCALL_OP_KEYS", "HypercallOp", "HypervisorConfig", "MEMORY_OP_CMDS", "MmuRequest",
    "MmuextRequest",
    "KeyPath", "MachineConfig", "MemmapFileConfig", "MixConfig", "RangeConfig",
    "ScriptOpConfig", "Size", "WORKLOAD_KINDS", "WorkloadConfig", "YamlDoc", "build_memory_map",
    "check_simulation", "default_config", "default_config_path", "dump_resolved", "format_path",
    "list_presets", "load_config", "load_dataclass", "load_memmap_file", "load_preset",
    "load_yaml", "parse_config", "preset_dir", "read_text", "resolved_config", "size",
]
