"""The raw hypercalls of a ``script`` workload (``workload.ops``): a fuzzer's reproducer.

A reproducer written by ``xensim fuzz`` is an ordinary config whose workload is
``{kind: script, ops: [...]}``: each item one hypercall (or dom0's
create/destroy_domain) as plain data, e.g.
``{op: mmu_update, domain: g1, reqs: [[0x1c2d008, 0x4a2067]]}``. This module is
their schema: :class:`HypercallOp`, loaded by the config package's typed loader,
so a bad item is reported as ``FILE:LINE: workload.ops[3].reqs[0]: ...``.
``xensim run`` replays such a config with every fuzzer check (docs/fuzzing.md).

Which keys each op takes (``*``: required):

================== =========================================================
create_domain      name*, max_pages*, vcpus
destroy_domain     domain
mmu_update         domain, reqs* ([ptr, val] each), foreign, vcpu, preempt
mmuext_op          domain, ops* ([cmd, arg1] or [cmd, arg1, arg2] each: cmd an MMUEXT name or number), foreign, vcpu, preempt
memory_op          domain, cmd*, order, extents, nr, target
update_va_mapping  domain, va*, val*, flags, vcpumask, vcpu (vcpumask: the vCPU bitmap a
                   UVMF_MULTI flush's pointer points at; absent: the pointer cannot be read)
grant_access       domain, ref*, grantee, frame*, readonly (the guest writes its grant entry)
end_access         domain, ref* (the guest revokes it: refused, -EBUSY, while it is mapped)
grant_table_op     domain, cmd*, grants*, target (cmd a GNTTABOP name; one list per op:
                   map_grant_ref [host_addr, flags, ref] of ``target``'s grant,
                   unmap_grant_ref [host_addr, dev_bus_addr, handle], unmap_and_replace
                   [host_addr, new_addr, handle], setup_table [nr_frames], query_size [])
continue           domain, vcpu, preempt (the vCPU re-enters the call Xen preempted
                   there, with the arguments Xen wrote back; nothing pending: -EINVAL)
================== =========================================================

``domain`` is the calling domain's name (default ``dom0``); names that no
domain has are kept, the hypervisor refuses them (-ESRCH). ``vcpu``: the calling
vCPU (default 0; one the domain does not have: -ESRCH); ``vcpus``: the new domain's
(default 1). ``preempt``: which of the call's ``hypercall_preempt_check()`` questions
(counted from 1) answer true, when the config's ``hypervisor.preempt`` is not never.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from ..xen import GNTTABOP_NAMES, MMUEXT_NAMES

__all__ = ["HYPERCALL_OPS", "MEMORY_OP_CMDS", "GRANT_OP_CMDS", "HYPERCALL_OP_KEYS", "MmuRequest",
           "MmuextRequest", "HypercallOp"]

#: the ops of a reproducer: dom0's domain control and the fuzzed hypercalls
HYPERCALL_OPS = ("create_domain", "destroy_domain", "mmu_update", "mmuext_op", "memory_op",
                 "update_va_mapping", "grant_access", "end_access", "grant_table_op", "continue")
#: memory_op's sub-commands (XENMEM_*), by name
MEMORY_OP_CMDS = ("increase_reservation", "decrease_reservation", "populate_physmap")
#: grant_table_op's sub-commands (GNTTABOP_*), by name
GRANT_OP_CMDS = tuple(GNTTABOP_NAMES.values())
#: the keys each op takes (``*``: required), besides ``op``
HYPERCALL_OP_KEYS = {
    "create_domain": ("name*", "max_pages*", "vcpus"),
    "destroy_domain": ("domain",),
    "mmu_update": ("domain", "reqs*", "foreign", "vcpu", "preempt"),
    "mmuext_op": ("domain", "ops*", "foreign", "vcpu", "preempt"),
    "memory_op": ("domain", "cmd*", "order", "extents", "nr", "target"),
    "update_va_mapping": ("domain", "va*", "val*", "flags", "vcpumask", "vcpu"),
    "grant_access": ("domain", "ref*", "grantee", "frame*", "readonly"),
    "end_access": ("domain", "ref*"),
    "grant_table_op": ("domain", "cmd*", "grants*", "target"),
    "continue": ("domain", "vcpu", "preempt"),
}


@dataclass
class MmuRequest:
    """One mmu_update request: ``[ptr, val]`` (ptr's low bits: the command)."""

    __yaml_sequence__ = ("ptr", "val")

    ptr: int
    val: int


def _check_mmuext_cmd(value: Any) -> None:
    if isinstance(value, str):
        if value not in MMUEXT_NAMES.values():
            raise ValueError(f"unknown MMUEXT command {value!r}; use a number or one of: "
                             f"{', '.join(MMUEXT_NAMES.values())}")
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an MMUEXT command name or number, got {value!r}")


@dataclass
class MmuextRequest:
    """One mmuext_op request: ``[cmd, arg1]`` or ``[cmd, arg1, arg2]``, cmd a name
    (``pin_l4_table``) or a number; ``arg2``: COPY_PAGE's source MFN, SET_LDT's number
    of entries, TLB_FLUSH_MULTI's vCPU mask (default 0)."""

    __yaml_sequence__ = ("cmd", "arg1", "arg2")

    cmd: Any = field(metadata={"check": _check_mmuext_cmd})
    arg1: int
    arg2: int = 0


@dataclass
class HypercallOp:
    """One call of a reproducer; :meth:`as_dict` is the fuzzer's plain form of it."""

    op: Literal[HYPERCALL_OPS]
    name: str | None = None
    max_pages: int | None = None
    domain: str | None = None
    cmd: Literal[MEMORY_OP_CMDS + GRANT_OP_CMDS] | None = None
    order: int | None = None
    extents: list[int] | None = None
    nr: int | None = None
    target: str | None = None
    reqs: list[MmuRequest] | None = None
    ops: list[MmuextRequest] | None = None
    foreign: str | None = None
    va: int | None = None
    val: int | None = None
    flags: int | None = None
    vcpumask: int | None = None
    ref: int | None = None
    grantee: str | None = None
    frame: int | None = None
    readonly: bool | None = None
    grants: list[list[int]] | None = None
    vcpu: int | None = None
    vcpus: int | None = None
    preempt: list[int] | None = None

    def _after_load(self, fail: Callable[..., None]) -> None:
        spec = HYPERCALL_OP_KEYS[self.op]
        takes = [k.rstrip("*") for k in spec]
        for f in dataclasses.fields(self):
            if f.name != "op" and getattr(self, f.name) is not None and f.name not in takes:
                fail(f"op {self.op} takes no '{f.name}' (it takes {', '.join(takes)})", f.name)
        for k in spec:
            if k.endswith("*") and getattr(self, k[:-1]) is None:
                fail(f"op {self.op} needs '{k[:-1]}'")
        cmds = GRANT_OP_CMDS if self.op == "grant_table_op" else MEMORY_OP_CMDS
        if self.cmd is not None and self.cmd not in cmds:
            fail(f"op {self.op} takes cmd {', '.join(cmds)}, not {self.cmd!r}", "cmd")

    def as_dict(self) -> dict:
        """The op as the fuzzer issues it: ``{"op": ..., key: value, ...}``, requests as
        ``[ptr, val]`` / ``[cmd, arg1]`` (``[cmd, arg1, arg2]``) lists. A memory_op always has ``extents``
        (None: a null extent list)."""
        out: dict = {"op": self.op}
        for f in dataclasses.fields(self)[1:]:
            v = getattr(self, f.name)
            if v is None and not (f.name == "extents" and self.op == "memory_op"):
                continue
            if f.name == "reqs":
                v = [[r.ptr, r.val] for r in v]
            elif f.name == "ops":
                v = [[o.cmd, o.arg1] + ([o.arg2] if o.arg2 else []) for o in v]
            elif f.name == "grants":
                v = [list(g) for g in v]
            elif isinstance(v, list):
                v = list(v)
            out[f.name] = v
        return out
