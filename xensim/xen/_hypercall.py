"""The mock hypercall layer: one entry point with Xen's numbers and errno values.

A guest issues ``machine.hypercall(caller_domid, number, *args)`` (from its vCPU
``vcpu=N``, default 0); the result is what Xen returns to the guest: 0 / a count on
success, a negative errno on failure. Handlers register per hypercall number; unknown
numbers give -ENOSYS. A handler that acts on the calling vCPU (Xen's ``current``)
registers ``per_vcpu`` and is given ``vcpu=``. A caller that does not exist, or is
dying, or a vCPU it does not have, gets -ESRCH: in Xen a dying domain's vCPUs never
run again, so it issues no hypercalls (xensim's stand-in for that).
Per-call statistics (calls, errors by errno name) are kept. Each call emits
``hypercall_enter`` / ``hypercall_leave`` on the machine's event bus, and, for the
explorer, the ``atomic_step`` ``hcall`` (entering is a step).
"""

from __future__ import annotations

import errno
import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

# hypercall numbers (xen/include/public/xen.h)
HYPERVISOR_mmu_update = 1
HYPERVISOR_memory_op = 12
HYPERVISOR_update_va_mapping = 14
HYPERVISOR_grant_table_op = 20
HYPERVISOR_mmuext_op = 26

HYPERCALL_NAMES = {
    HYPERVISOR_mmu_update: "mmu_update",
    HYPERVISOR_memory_op: "memory_op",
    HYPERVISOR_update_va_mapping: "update_va_mapping",
    HYPERVISOR_grant_table_op: "grant_table_op",
    HYPERVISOR_mmuext_op: "mmuext_op",
}


#: where two names share a number, the one Xen's headers use
_XEN_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errno_name(rc: int) -> str:
    """``-22`` -> ``"EINVAL"`` (``-95`` -> ``"EOPNOTSUPP"``, as Xen spells it)."""
    return _XEN_NAMES.get(-rc) or errno.errorcode.get(-rc, str(rc))


@dataclass
class CallStats:
    calls: int = 0
    errors: Counter = field(default_factory=Counter)   # errno name -> count

    def as_dict(self) -> dict:
        return {"calls": self.calls, "errors": dict(sorted(self.errors.items()))}


#: per-vCPU handlers whose ``vcpu`` was found to default to 0 (HypercallLayer.register)
_VCPU_DEFAULT_0: set = set()


class HypercallLayer:
    """Dispatch by hypercall number; handlers are ``f(machine, caller, *args) -> int``."""

    def __init__(self, machine):
        self.machine = machine
        self.handlers: dict[int, Callable[..., int]] = {}
        #: the numbers whose handler is given the calling vCPU (``vcpu=``)
        self.per_vcpu: set[int] = set()
        self.stats: dict[str, CallStats] = {}
        #: number -> its entry of ``stats`` (the name looked up once per number)
        self._stats_of: dict[int, CallStats] = {}
        #: domid -> hypercalls of that domain in progress (domain_pause waits for 0)
        self.active: dict[int, int] = {}
        #: the calling vCPU of the call in progress while hypercall_enter is observed (the
        #: tracer names it beside the caller); 0 between calls
        self.vcpu = 0
        #: hypercall_enter, hypercall_leave, atomic_step: the bus's, mirrored (see _events)
        machine.events.attach(self, ("hypercall_enter", "hypercall_leave", "atomic_step"))

    def register(self, number: int, handler: Callable[..., int], per_vcpu: bool = False) -> None:
        """``per_vcpu``: ``handler`` takes ``vcpu=`` (default 0: vCPU 0's calls omit it)."""
        if per_vcpu and handler not in _VCPU_DEFAULT_0:
            if inspect.signature(handler).parameters["vcpu"].default != 0:
                raise ValueError(f"{handler.__name__}: a per-vCPU handler's vcpu must default "
                                 "to 0")
            _VCPU_DEFAULT_0.add(handler)        # (checked once: every machine registers them)
        self.handlers[number] = handler
        if per_vcpu:
            self.per_vcpu.add(number)

    def __call__(self, caller: int, number: int, *args, vcpu: int = 0) -> int:
        st = self._stats_of.get(number)
        if st is None:
            st = self._call_stats(number)
        st.calls += 1
        if self.hypercall_enter is not None:
            self.vcpu = vcpu
            self.hypercall_enter(caller, number, args)
        if self.atomic_step is not None:              # under the explorer: entering is a step
            self.atomic_step("hcall", caller, number)
        handler = self.handlers.get(number)
        d = self.machine.domains.get(caller)
        if handler is None or d is None or d.is_dying or not 0 <= vcpu < len(d.vcpus):
            # a dying domain never runs again (domain_kill paused it): its calls are
            # refused like those of a domain (or a vCPU) that does not exist
            rc = -errno.ENOSYS if handler is None else -errno.ESRCH
        else:
            active = self.active
            active[caller] = active.get(caller, 0) + 1
            try:
                if vcpu and number in self.per_vcpu:
                    rc = handler(self.machine, caller, *args, vcpu=vcpu)
                else:                       # (a per-vCPU handler's vcpu defaults to 0)
                    rc = handler(self.machine, caller, *args)
            finally:
                active[caller] -= 1
        if rc < 0:
            st.errors[errno_name(rc)] += 1
        if self.hypercall_leave is not None:
            self.hypercall_leave(caller, number, args, rc)
        self.vcpu = 0
        return rc

    def _call_stats(self, number: int) -> CallStats:
        """The statistics of hypercall ``number`` (by its name), made on its first call."""
        name = HYPERCALL_NAMES.get(number) or f"hypercall{number}"
        st = self.stats.get(name)
        if st is None:
            st = self.stats[name] = CallStats()
        self._stats_of[number] = st
        return st

    def as_dict(self) -> dict:
        return {k: v.as_dict() for k, v in sorted(self.stats.items())}
