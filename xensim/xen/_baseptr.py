"""A domain's vCPUs and their root tables: Xen's ``struct vcpu``'s ``arch.guest_table``,
``guest_table_user`` and ``old_guest_table``, and the functions of ``mm.c`` that change
them: ``new_guest_cr3`` (MMUEXT_NEW_BASEPTR), MMUEXT_NEW_USER_BASEPTR (``do_mmuext_op``),
``put_old_guest_table`` and ``vcpu_destroy_pagetables`` (4.1: ``domain.c``), read at
RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0 and 4.22.0.

Each root a vCPU holds is one general and one ``PGT_root_page_table`` (on x86-64
``PGT_l4_page_table``) type reference of its frame, taken by
``get_page_and_type_from_pagenr``. A 64-bit PV guest has two roots per vCPU: the
kernel's (``guest_table``, NEW_BASEPTR) and the user page table's
(``guest_table_user``, NEW_USER_BASEPTR: Linux issues it on every CR3 write, each
process having a user L4 of its own). For NEW_USER_BASEPTR the MFN 0 means "no user
root" (the frame is never taken); xensim's ``guest_table`` is None for no root, so that
a machine whose RAM starts at frame 0 may use it (Xen never gives frame 0 to a guest).

``old_guest_table`` is the table whose references a preempted put left to finish (from
4.3, XSA-45's fix): an unpin or the old root's put in NEW_BASEPTR / NEW_USER_BASEPTR
preempted while the table was devalidated (``Machine.preempt``). The next mmuext_op,
mmu_update or NEW_BASEPTR first finishes it (``put_old_guest_table``, preemptible too).

What changed between the modelled releases (:data:`RULES`, by the first release of each
row; a later release takes the latest row at or before it):

* 4.1: a failure is -EINVAL whatever failed (``new_guest_cr3`` returns 0, the loop
  makes it -EINVAL; NEW_USER_BASEPTR sets ``okay = 0``); the foreign domain is ignored
  (the caller's own vCPU and frames); no same-MFN exit (the new reference is taken
  before the old one is put: the same counts after).
* 4.5 on (4.22 the same): a foreign domain is -EPERM; the same MFN again is done at once
  (``old_mfn == mfn``: a restarted call must not take a second reference); a failure is
  get_page_and_type's errno; ``put_old_guest_table`` runs first.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from functools import cache

from ..mem import PGT_l4_page_table
from ._preempt import ERESTART
from ._release import Release

#: Xen's PGT_root_page_table on x86-64
PGT_root_page_table = PGT_l4_page_table


@dataclass(frozen=True)
class BaseptrRules:
    """How one range of releases installs a root table."""
    #: NEW_BASEPTR / NEW_USER_BASEPTR naming another domain: -EPERM (False: ignored)
    foreign_refused: bool
    #: the root installed again is done at once, nothing taken
    same_mfn_exit: bool
    #: a failure is get_page_and_type's errno (False: -EINVAL whatever failed)
    errno_as_given: bool
    #: ``old_guest_table`` exists (put first by mmuext_op, mmu_update, new_guest_cr3)
    old_guest_table: bool


#: by the first release that has each behaviour (``rules_for`` picks the row)
RULES: dict[Release, BaseptrRules] = {
    Release.R4_1: BaseptrRules(False, False, False, False),
    Release.R4_5: BaseptrRules(True, True, True, True),
}


@cache
def rules_for(release: Release) -> BaseptrRules:
    """The row of :data:`RULES` that ``release`` follows (looked up once per release:
    every mmuext_op and mmu_update asks)."""
    return RULES[max(r for r in RULES if r <= release)]


@dataclass
class Vcpu:
    """One vCPU of a domain: its root tables (MFNs; None: no root) and its LDT."""
    vcpu_id: int
    #: the kernel root table (CR3): MMUEXT_NEW_BASEPTR
    guest_table: int | None = None
    #: the user root table of a 64-bit PV guest: MMUEXT_NEW_USER_BASEPTR
    guest_table_user: int | None = None
    #: a table whose put was preempted or deferred, to finish first (XSA-45); never set
    #: without preemption
    old_guest_table: int | None = None
    #: (4.13 on, and with partial_flags) the put of ``old_guest_table`` was preempted: it
    #: holds a general reference and only cleans up a table still PGT_partial; False: a
    #: deferred put (mod_lN_entry's old entry), a general and a type reference
    old_guest_table_partial: bool = False
    #: MMUEXT_SET_LDT: linear address and number of entries
    ldt_base: int = 0
    ldt_ents: int = 0

    @property
    def name(self) -> str:
        return f"v{self.vcpu_id}"

    def capture(self) -> tuple:
        return (self.guest_table, self.guest_table_user, self.old_guest_table,
                self.old_guest_table_partial, self.ldt_base, self.ldt_ents)

    def restore(self, state: tuple) -> None:
        (self.guest_table, self.guest_table_user, self.old_guest_table,
         self.old_guest_table_partial, self.ldt_base, self.ldt_ents) = state

    def roots(self):
        """(mfn, what) of each root reference this vCPU holds."""
        if self.guest_table is not None:
            yield self.guest_table, "guest_table"
        if self.guest_table_user is not None:
            yield self.guest_table_user, "guest_table_user"
        if self.old_guest_table is not None:
            yield self.old_guest_table, "old_guest_table"


#: how outputs name each root a vCPU holds
ROOT_NAMES = {"guest_table": "base pointer", "guest_table_user": "user base pointer",
              "old_guest_table": "old root (a put to finish)"}


def vcpu_roots(d):
    """(mfn, text) of every root reference ``d``'s vCPUs hold (each one general and one
    PGT_root_page_table reference), the text e.g. ``user base pointer of d1.v0``."""
    for v in d.vcpus:
        for mfn, what in v.roots():
            yield mfn, f"{ROOT_NAMES[what]} of d{d.domid}.{v.name}"


def root_mfns(d) -> tuple:
    """The MFN of every root ``d``'s vCPUs hold (``guest_table``, ``guest_table_user``:
    one general and one PGT_root_page_table reference each), vCPU by vCPU (a frame twice
    when two roots are it). ``old_guest_table`` is counted apart (``PageTables.expect_partial``):
    the table it holds may be of any level, partly devalidated."""
    return tuple([mfn for v in d.vcpus for mfn in (v.guest_table, v.guest_table_user)
                  if mfn is not None])


def _take_root(m, d, mfn: int) -> int:
    """get_page_and_type_from_pagenr(mfn, PGT_root_page_table, d): 0 or -errno (the
    release's: 4.1 makes every failure -EINVAL)."""
    if not m.mfn_valid(mfn):
        rc = -errno.EINVAL
    else:
        # 4.5 on get_page_and_type_from_pagenr(..., preemptible 1): -ERESTART is the op's
        rc = m.refs.get_page_and_type_rc(m.mfn_to_page(mfn), d.domid, PGT_root_page_table,
                                         rules_for(m.release).old_guest_table)
        if rc == -errno.EINTR:            # new_guest_cr3: -EINTR and -ERESTART are -ERESTART
            rc = -ERESTART
    if rc and not rules_for(m.release).errno_as_given:
        return -errno.EINVAL
    return rc


def _put_root(m, mfn: int) -> None:
    m.refs.put_page_and_type(m.mfn_to_page(mfn))


def _put_old_root(m, v: Vcpu, mfn: int) -> int:
    """The old root's put in new_guest_cr3 / NEW_USER_BASEPTR: 4.5 on
    put_page_and_type_preemptible, and if it is preempted the vCPU's ``old_guest_table``
    keeps the references (-ERESTART: the op is continued, and finds the root installed)."""
    if not rules_for(m.release).old_guest_table:
        _put_root(m, mfn)
        return 0
    rc = m.refs.put_page_and_type_preemptible(m.mfn_to_page(mfn))
    if rc == -ERESTART:
        v.old_guest_table, v.old_guest_table_partial = mfn, True
    return rc


def put_old_guest_table(m, v: Vcpu, preemptible: bool = True) -> int:
    """Xen's put_old_guest_table (4.3 on): finish the put a preempted call left, itself
    preemptible (put_page_and_type_preemptible): -ERESTART keeps ``old_guest_table``.
    (``preemptible`` False: at destruction, where xensim runs it to the end.) With
    ``partial_flags`` (4.13 on): the type put says PTF_partial_set when the put it
    finishes was preempted (``old_guest_table_partial``), the general one always follows."""
    if v.old_guest_table is None:
        return 0
    page = m.mfn_to_page(v.old_guest_table)
    if m.partial_flags:
        rc = m.refs.put_page_type(page, preemptible, v.old_guest_table_partial)
        if rc == 0:
            m.refs.put_page(page)
    elif preemptible:
        rc = m.refs.put_page_and_type_preemptible(page)
    else:
        m.refs.put_page_and_type(page)
        rc = 0
    if rc == -ERESTART:
        v.old_guest_table_partial = True
        return rc
    v.old_guest_table, v.old_guest_table_partial = None, False
    return 0


def new_guest_cr3(m, d, v: Vcpu, mfn: int) -> int:
    """MMUEXT_NEW_BASEPTR: ``v``'s kernel root becomes ``mfn`` (its references taken),
    the old root's references are put. 0 or -errno, nothing changed on failure."""
    rules = rules_for(m.release)
    if rules.old_guest_table and (rc := put_old_guest_table(m, v)):
        return rc
    old = v.guest_table
    if rules.same_mfn_exit and old == mfn:
        return 0
    rc = _take_root(m, d, mfn)
    if rc:
        return rc
    v.guest_table = mfn
    if old is not None:
        return _put_old_root(m, v, old)
    return 0


def new_user_baseptr(m, d, v: Vcpu, mfn: int) -> int:
    """MMUEXT_NEW_USER_BASEPTR: ``v``'s user root becomes ``mfn`` (0: none), as
    :func:`new_guest_cr3` does for the kernel root."""
    rules = rules_for(m.release)
    old = v.guest_table_user
    if rules.same_mfn_exit and (old or 0) == mfn:
        return 0
    if mfn != 0:
        rc = _take_root(m, d, mfn)
        if rc:
            return rc
    v.guest_table_user = mfn or None
    if old is not None:
        return _put_old_root(m, v, old)
    return 0


def vcpu_destroy_pagetables(m, v: Vcpu) -> None:
    """At destruction (``domain_relinquish_resources``, each vCPU): the old table left
    by a preempted put (4.3 on), then the kernel root, then the user root are put."""
    put_old_guest_table(m, v, False)
    if v.guest_table is not None:
        mfn, v.guest_table = v.guest_table, None
        _put_root(m, mfn)
    if v.guest_table_user is not None:
        mfn, v.guest_table_user = v.guest_table_user, None
        _put_root(m, mfn)
