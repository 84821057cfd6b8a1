"""The fuzzed guests: :class:`FuzzGuest`, a name, a domid and a :class:`FuzzKernel` (a
GuestKernel whose every store is a hypercall) that sees the machine through a
:class:`KernelView`, which sends its hypercalls to the fuzzer to be recorded as ops
and checked like any other call."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..guest import GuestError, GuestKernel
from ..mem import PAGE_SHIFT
from ..xen import errno_name

__all__ = ["KernelView", "FuzzKernel", "FuzzGuest"]


class KernelView:
    """The machine as a fuzzed guest kernel sees it: hypercalls go through the fuzzer
    (its ``kernel_call``), everything else is the fuzzer's machine ``m``."""

    def __init__(self, fuzzer):
        self._f = fuzzer

    def __getattr__(self, name):
        return getattr(self._f.m, name)

    def hypercall(self, caller: int, number: int, *args, vcpu: int = 0) -> int:
        return self._f.kernel_call(caller, number, *args, vcpu=vcpu)


class FuzzKernel(GuestKernel):
    """GuestKernel whose stores into its own frames are hypercalls too (plain mmu_update
    writes, a batch for a fallback L1 table's 512 entries), and whose page-table pool is populated at once (one call, contiguous frames)."""

    def _pool_frame(self) -> int:
        while self._pt_next < self.d.max_pages:
            gfn = self._pt_next
            self._pt_next += 1
            mfn = self.d.p2m.get(gfn)
            if mfn >= 0:
                return mfn
        raise GuestError("page-table pool exhausted")

    def _write_own(self, mfn: int, index: int, value: int) -> None:
        if self.mmu_update([((mfn << PAGE_SHIFT) | (index * 8), value)]) != 0:
            raise GuestError(f"plain write to {mfn:#x} refused ({errno_name(self.last_rc)})")

    def _write_own_table(self, mfn: int, values) -> None:
        """The 512 stores of a fallback L1 table (no PV superpages): one batch of plain writes."""
        reqs = [((mfn << PAGE_SHIFT) | (i * 8), int(v)) for i, v in enumerate(values)]
        if self.mmu_update(reqs) != 0:
            raise GuestError(f"plain writes to {mfn:#x} refused ({errno_name(self.last_rc)})")


@dataclass
class FuzzGuest:
    """One fuzzed guest: its name in the ops, its domid, its kernel."""
    name: str
    domid: int
    kernel: FuzzKernel
    #: the grant entries it wrote: ref -> (grantee's name, frame, read-only)
    granted: dict = field(default_factory=dict)
    #: its grant mappings: handle -> (host address, GNTMAP flags left, frame)
    handles: dict = field(default_factory=dict)
