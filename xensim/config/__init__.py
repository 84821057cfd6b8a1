"""Configuration: the YAML source with line numbers (_yamlsrc), the typed dataclass
loader (_loader), the config schema (_schema), memory-map files (_files), the
machine presets (_presets), config files (_config), explorer scenario files
(_scenario) and the resolved config (_resolved).
"""

from ._yamlsrc import (
    KeyPath, YamlDoc, load_yaml, read_text, format_path,
)
from ._loader import (
    Size, size, load_dataclass, describe, line_of, top_mapping,
)
from ._files import (
    MemmapFileConfig, load_memmap_file,
)
from ._presets import (
    DEFAULT_PRESET, preset_dir, list_presets, load_preset,
)
from ._schema import (
    RangeConfig, MachineConfig, HypervisorConfig, DomainConfig, MixConfig, ScriptOpConfig,
    WorkloadConfig, CostModelConfig, Config, check_simulation, workload_ops, WORKLOAD_KINDS,
    GUEST_OPS, PROCESS_OPS, SLOT_RUN_OPS, SUPERPAGE_RUN_OPS, MAX_SLOTS, SUPERPAGE_BYTES, MAX_WORKLOAD_OPS,
    FRAME_ATOMIC_NS, CMPXCHG_NS, HYPERCALL_NS,
)
from ._config import (
    load_config, parse_config, config_from_data, default_config, default_config_path,
    build_memory_map, read_design_files,
)
from ._scenario import (
    SCENARIO_OPS, TABLE_OPS, BAD_ENTRY, ScenarioOp, ScenarioEntry, ScenarioTable, ScenarioFile,
    Scenario, load_scenario, MAX_STEPS, op_vcpu,
)
from ._hypercall_ops import (
    HYPERCALL_OPS, MEMORY_OP_CMDS, GRANT_OP_CMDS, HYPERCALL_OP_KEYS, MmuRequest, MmuextRequest, HypercallOp,
)
from ._resolved import (
    to_data, drop_none, resolved_config, dump_resolved,
)

__all__ = [
    "CMPXCHG_NS", "Config", "CostModelConfig", "DEFAULT_PRESET", "DomainConfig",
    "FRAME_ATOMIC_NS", "GUEST_OPS", "GRANT_OP_CMDS", "HYPERCALL_OPS", "HYPERCALL_OP_KEYS", "HypercallOp", "PROCESS_OPS",
    "MEMORY_OP_CMDS", "MmuRequest", "MmuextRequest", "HYPERCALL_NS", "HypervisorConfig", "KeyPath", "MAX_SLOTS",
    "MAX_STEPS", "MAX_WORKLOAD_OPS", "MachineConfig", "MemmapFileConfig", "MixConfig",
    "RangeConfig", "SCENARIO_OPS", "SLOT_RUN_OPS", "SUPERPAGE_BYTES", "SUPERPAGE_RUN_OPS",
    "BAD_ENTRY", "Scenario", "ScenarioEntry", "ScenarioFile", "ScenarioOp", "ScenarioTable",
    "ScriptOpConfig", "TABLE_OPS", "Size", "WORKLOAD_KINDS",
    "WorkloadConfig", "YamlDoc", "build_memory_map", "check_simulation", "config_from_data",
    "default_config", "default_config_path", "describe", "drop_none", "dump_resolved",
    "format_path", "line_of", "list_presets", "load_config", "load_dataclass",
    "load_memmap_file", "load_preset", "load_scenario", "load_yaml", "op_vcpu", "parse_config",
    "preset_dir", "read_design_files", "read_text", "resolved_config", "size", "to_data", "top_mapping", "workload_ops",
]
