"""The hypercall operations a fuzz step is: one op as plain data (``{"op": "mmu_update",
"domain": "g1", "reqs": [[ptr, val]]}``, the items of a reproducer's ``workload.ops``:
xensim.config's HypercallOp), :func:`execute` issuing it on a machine and its
:class:`CallResult`, :func:`singles` splitting a batch into its requests (the ``batch``
check of docs/fuzzing.md) and :func:`op_label`, the name a call is counted under."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ..config import HYPERCALL_OPS
from ..xen import (DOMID_SELF, GNTTABOP_NAMES, HYPERVISOR_grant_table_op, HYPERVISOR_memory_op,
                   GNTTABOP_map_grant_ref, GNTTABOP_setup_table, GNTTABOP_unmap_and_replace,
                   GNTTABOP_unmap_grant_ref, GnttabMapGrantRef,
                   GnttabQuerySize, GnttabSetupTable, GnttabUnmapAndReplace, GnttabUnmapGrantRef, HYPERVISOR_mmu_update,
                   HYPERVISOR_mmuext_op, HYPERVISOR_update_va_mapping, MMU_MACHPHYS_UPDATE,
                   MMUEXT_NAMES, Machine, MmuextOp, MmuUpdate, XENMEM_decrease_reservation,
                   XENMEM_increase_reservation, XENMEM_populate_physmap, XenMemoryReservation)

__all__ = ["HYPERCALL_OPS", "NO_SUCH_DOMID", "MMUEXT_CMDS", "MEMOP_CMDS", "MEMOP_NAMES",
           "GRANT_CMDS", "CallResult", "as_int", "grant_args", "execute", "singles", "op_label"]

#: a domid no domain has (for names that do not exist when a script is replayed)
NO_SUCH_DOMID = 0x7FEF

MMUEXT_CMDS = {name: cmd for cmd, name in MMUEXT_NAMES.items()}
MEMOP_CMDS = {"increase_reservation": XENMEM_increase_reservation,
              "decrease_reservation": XENMEM_decrease_reservation,
              "populate_physmap": XENMEM_populate_physmap}
MEMOP_NAMES = {v: k for k, v in MEMOP_CMDS.items()}
GRANT_CMDS = {name: cmd for cmd, name in GNTTABOP_NAMES.items()}


def grant_args(cmd: int, grants: list, target: int) -> list:
    """grant_table_op's argument structures from an op's lists (see xensim.config's
    HypercallOp), ``target`` the domain a map or setup/query names."""
    ints = [[as_int(x) for x in g] for g in grants]
    if cmd == GNTTABOP_map_grant_ref:
        return [GnttabMapGrantRef(*(g + [0, 0, 0])[:3], target) for g in ints]
    if cmd == GNTTABOP_unmap_and_replace:
        return [GnttabUnmapAndReplace(*(g + [0, 0, 0])[:3]) for g in ints]
    if cmd == GNTTABOP_unmap_grant_ref:
        return [GnttabUnmapGrantRef(*(g + [0, 0, 0])[:3]) for g in ints]
    if cmd == GNTTABOP_setup_table:
        return [GnttabSetupTable(target, (g + [0])[0]) for g in ints]
    return [GnttabQuerySize(target) for _ in ints]


def as_int(x) -> int:
    """An int of an op's field (an int, or a string such as ``"0x1000"``)."""
    if type(x) is int:                    # the common case (hot: every request's fields)
        return x
    return int(x, 0) if isinstance(x, str) else int(x)


@dataclass
class CallResult:
    """What one op returned: rc, and how many of its ``n`` requests (extents) were done."""
    rc: int
    done: int = 0
    n: int = 1
    out: list | None = None

    @property
    def failed(self) -> bool:
        return self.rc < 0 or self.done < self.n


def execute(m: Machine, doms: dict[str, int], op: dict) -> CallResult:
    """Issue one op on ``m``. ``doms`` maps domain names to domids (create_domain adds)."""
    kind = op["op"]
    if kind == "create_domain":
        rc = m.create_domain(op["name"], int(op["max_pages"]), vcpus=int(op.get("vcpus", 1)))
        if rc > 0:
            doms[op["name"]] = rc
        return CallResult(rc, int(rc > 0), 1)
    dom = doms.get(op.get("domain", "dom0"), NO_SUCH_DOMID)
    if kind == "destroy_domain":
        rc = m.destroy_domain(dom)
        return CallResult(rc, int(rc == 0), 1)
    foreign = op.get("foreign")
    fd = DOMID_SELF if foreign is None else doms.get(foreign, NO_SUCH_DOMID)
    if kind == "mmu_update":
        reqs = [MmuUpdate(as_int(p), as_int(v)) for p, v in op["reqs"]]
        done = [0]
        rc = m.hypercall(dom, HYPERVISOR_mmu_update, reqs, done, fd, vcpu=int(op.get("vcpu", 0)))
        return CallResult(rc, done[0], len(reqs))
    if kind == "mmuext_op":
        ops = [MmuextOp(MMUEXT_CMDS[c] if isinstance(c, str) else int(c), as_int(a),
                        as_int(rest[0]) if rest else 0) for c, a, *rest in op["ops"]]
        done = [0]
        rc = m.hypercall(dom, HYPERVISOR_mmuext_op, ops, done, fd, vcpu=int(op.get("vcpu", 0)))
        return CallResult(rc, done[0], len(ops))
    if kind == "memory_op":
        ext = op.get("extents")
        ext = None if ext is None else [as_int(x) for x in ext]
        nr = int(op.get("nr", len(ext) if ext is not None else 1))
        target = op.get("target")
        tid = DOMID_SELF if target is None else doms.get(target, NO_SUCH_DOMID)
        r = XenMemoryReservation(ext, nr, int(op.get("order", 0)), 0, tid)
        rc = m.hypercall(dom, HYPERVISOR_memory_op, MEMOP_CMDS[op["cmd"]], r)
        return CallResult(rc, max(rc, 0), nr, r.extent_start)
    if kind == "update_va_mapping":
        mask = op.get("vcpumask")
        rc = m.hypercall(dom, HYPERVISOR_update_va_mapping, as_int(op["va"]), as_int(op["val"]),
                         int(op.get("flags", 0)), None if mask is None else as_int(mask),
                         vcpu=int(op.get("vcpu", 0)))
        return CallResult(rc, int(rc == 0), 1)
    if kind == "grant_access":
        # the guest writes entry ``ref`` of its own grant frames (no hypercall)
        grantee = doms.get(op.get("grantee", "dom0"), NO_SUCH_DOMID)
        gt = m.domains.get(dom)
        ok = gt is not None and not gt.is_dying and m.gnttab.grant_access(
            dom, int(op["ref"]), grantee, as_int(op["frame"]), bool(op.get("readonly", False)))
        rc = 0 if ok else -errno.EINVAL
        return CallResult(rc, int(ok), 1)
    if kind == "end_access":
        d = m.domains.get(dom)
        ok = d is not None and not d.is_dying and dom in m.gnttab.tables and \
            m.gnttab.end_access(dom, int(op["ref"]))
        return CallResult(0 if ok else -errno.EBUSY, int(ok), 1)
    if kind == "grant_table_op":
        cmd = GRANT_CMDS[op["cmd"]]
        target = op.get("target")
        tid = DOMID_SELF if target is None else doms.get(target, NO_SUCH_DOMID)
        args = grant_args(cmd, op["grants"], tid)
        rc = m.hypercall(dom, HYPERVISOR_grant_table_op, cmd, args, None)
        # one call: done if any op acted (an unmap_and_replace that fails has still taken the
        # entry at new_addr, as Xen's does)
        acted = any(a.status == 0 for a in args) or (cmd == GNTTABOP_unmap_and_replace and args)
        return CallResult(rc, int(rc == 0 and bool(acted)), 1,
                          [a.handle if cmd == GNTTABOP_map_grant_ref else a.status for a in args])
    raise ValueError(f"unknown op {kind!r} (one of {', '.join(HYPERCALL_OPS)})")


def singles(op: dict) -> list[dict]:
    """The op as single-request ops, in order (``[op]`` when it is one request).

    decrease_reservation of 2^order frames works page by page (a partly done
    extent stays removed), so its singles are order-0 calls, one per frame.
    """
    kind = op["op"]
    if kind == "mmu_update" and len(op["reqs"]) > 1:
        return [{**op, "reqs": [r]} for r in op["reqs"]]
    if kind == "mmuext_op" and len(op["ops"]) > 1:
        return [{**op, "ops": [o]} for o in op["ops"]]
    if kind == "memory_op":
        ext, order = op.get("extents"), int(op.get("order", 0))
        nr = int(op.get("nr", len(ext) if ext is not None else 1))
        if not (0 <= order <= 9 and nr >= 1 and (
                ext is not None and nr <= len(ext)
                or ext is None and op["cmd"] == "increase_reservation")):
            return [op]                                   # an argument error, or nothing asked
        if op["cmd"] == "decrease_reservation" and order > 0:
            return [{**op, "order": 0, "extents": [as_int(e) + j], "nr": 1}
                    for e in ext[:nr] for j in range(1 << order)]
        if nr > 1:
            if ext is None:
                return [{**op, "nr": 1} for _ in range(nr)]
            return [{**op, "extents": [e], "nr": 1} for e in ext[:nr]]
    return [op]


def op_label(op: dict) -> str:
    """mmu_update, mmuext_op/pin_l4_table (single sub-op), memory_op/populate_physmap ..."""
    kind = op["op"]
    if kind == "mmuext_op" and len(op["ops"]) == 1:
        c = op["ops"][0][0]
        return f"{kind}/{c if isinstance(c, str) else MMUEXT_NAMES.get(c, 'cmd' + str(c))}"
    if kind in ("memory_op", "grant_table_op"):
        return f"{kind}/{op['cmd']}"
    if kind == "mmu_update" and len(op["reqs"]) == 1:
        t = as_int(op["reqs"][0][0]) & 3
        return kind if t != MMU_MACHPHYS_UPDATE else f"{kind}/machphys"
    return kind
