"""A frame's life, from allocation to free: the two reference counts at every step.

Run it:  python examples/a_frame_life.py

A PV guest gets a 2 MiB extent from Xen (populate_physmap), maps one of its
frames writable with a 4 KiB page-table entry, maps it again read-only, unmaps
both, and gives the frame back (decrease_reservation: ballooning). After each
step we print the frame's page_info words decoded field by field, and, traced
at the frame level, every change of count_info / type_info the step made and the
primitive that made it (get_page, get_page_type, put_page ...): docs/xen-facts.md
sections 2-4, xen/arch/x86/mm.c and xen/common/memory.c.
"""

from xensim import GuestKernel, Machine, MemoryMap, audit
from xensim.teach import Tracer, count_info_text, type_info_text

MiB = 1 << 20
VA = 0xFFFF_8840_0000_0000          # where the guest maps its 4 KiB pages
VA2 = VA + (2 << 20)                # a second mapping of the same frame, read-only

m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none")
domid = m.create_domain("web", 512 + 16)             # max_pages: one superpage + page tables
k = GuestKernel(m, domid, pt_pool_pages=16)


def show(step: str, mfn: int) -> None:
    page = m.mfn_to_page(mfn)
    ft = m.frame_table
    owner = ft.owner(page)
    print(f"after {step}:")
    print(f"  count_info: {count_info_text(ft.count_info(page))}")
    print(f"  type_info: {type_info_text(ft.type_info(page))}")
    print(f"  owner: {'dom%d' % owner if owner in m.domains else 'none'}")


def traced(what: str, fn):
    """Run fn() with a frame-level tracer on the machine; print what it narrated."""
    t = Tracer(m, "frame").install()
    try:
        rc = fn()
    finally:
        t.uninstall()
    print(f"--- {what}")
    for line in t.lines:
        print("    " + "  " * (line.depth - 1) + line.text)
    return rc


intro = __doc__.split("\n\n")
print(intro[0])
print()
print(intro[2])
print()
# 1. populate_physmap: Xen's allocator hands out a free 2 MiB block and assign_pages
#    gives every frame the owner's own reference (PGC_allocated | count 1)
traced("populate_physmap of one 2 MiB extent at gpfn 0",
       lambda: k.populate(0, 512))
mfn = k.mfn(5)                                       # the frame we follow: the guest's gpfn 5
print(f"the frame we follow: gpfn 5 = mfn {mfn:#x}")
show("populate_physmap", mfn)
print("  (count 1 is PGC_allocated's: the domain's own reference while it owns the frame)\n")

# the guest builds its page-table tree (L4, L3, and the L2 and L1 for VA, VA2) first
assert k.build() == 0
for va in (VA, VA2):
    k.ensure_table(va, 1)

# 2. a writable 4 KiB mapping: get_page_from_l1e -> get_page_and_type(PGT_writable_page)
traced("map it writable (mmu_update of an L1 entry, RW)", lambda: k.map_pages(VA, [mfn], True))
show("the writable mapping", mfn)
print("  (+1 general reference, and the first typed reference makes it a writable page)\n")

# 3. a read-only mapping takes a general reference only
traced("map it again, read-only", lambda: k.map_pages(VA2, [mfn], False))
show("the read-only mapping", mfn)
print("  (read-only: get_page only, so the type count stays 1)\n")

# 4. unmapping drops what each entry held
traced("unmap both", lambda: (k.unmap(VA, 1, superpages=False), k.unmap(VA2, 1, superpages=False)))
show("unmapping", mfn)
print("  (type count 0: the type stays 'writable' in the word, and may change at the next get)\n")

# 5. balloon it out: guest_remove_page clears PGC_allocated and puts that reference;
#    at count 0, put_page frees the frame back to the heap
free_before = m.heap.free_frames
traced("balloon it out (decrease_reservation of the frame)", lambda: k.balloon_out([5]))
show("decrease_reservation", mfn)
print(f"  the heap has {m.heap.free_frames - free_before} more free frame: "
      f"mfn {mfn:#x} is free (is_free: {m.heap.is_free(mfn)})")
rep = audit(m)
print(f"\naudit: {'clean' if rep.ok else rep}: every count is what the page tables, pins "
      "and PGC_allocated say it must be")
