"""Mapping a 2 MiB superpage under each design: why per-mapping was unusable.

Run it:  python examples/b_superpage_designs.py

An L2 entry with PSE maps 512 frames at once. Xen 2008 (per-mapping) validated it
like 512 L1 entries: get_page_and_type(PGT_writable_page) on every frame, for
every mapping, and put them all back at every unmapping. The designs with a
count per superpage (pageinfo-count, superpage-info, xen-4.1, and the buggy
sketch) take the 512 references only when the count goes 0 -> 1: every other
mapping is one cmpxchg of the count. Here one guest maps the same superpage
once, then again, then 510 more times (512 PSE entries, a whole L2 table: a
superpage shared between address spaces), then unmaps all 512, on each design;
we count the frame-word operations (get_page_type, one per frame) and the
updates of the superpage's count (docs/xen-facts.md section 5; docs/designs/*.md).
"""

from xensim import DIRECTMAP_BASE, GuestKernel, Machine, MemoryMap, audit
from xensim.teach import spage_word_text, spage_words

MiB = 1 << 20
DESIGNS = ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch"]
MAPPINGS = 512                      # one full L2 table of entries, all on one superpage


def measure(design: str) -> dict:
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", superpage=design)
    k = GuestKernel(m, m.create_domain("web", 512 + 16), pt_pool_pages=16)
    assert k.populate(0, 512) == 1 and k.build() == 0
    k.ensure_table(DIRECTMAP_BASE, 2)                   # the L2 table: made before we count
    mfn = k.superpage_mfns(0, 1)[0]
    slot = lambda i: DIRECTMAP_BASE + i * (2 << 20)      # noqa: E731

    def counted(fn):
        refs0, sp0 = m.refs.stats.as_dict(), dict(m.superpage.stats)
        assert fn() == 0
        refs1, sp1 = m.refs.stats.as_dict(), dict(m.superpage.stats)
        counts = ("fast_get", "fast_put", "slow_get", "slow_put") if design != "per-mapping" else ()
        return {"get_page_type": refs1["get_page_type"] - refs0["get_page_type"],
                "put_page_type": refs1["put_page_type"] - refs0["put_page_type"],
                "count_updates": sum(sp1[x] - sp0[x] for x in counts)}

    first = counted(lambda: k.map_superpages(slot(0), [mfn]))
    second = counted(lambda: k.map_superpages(slot(1), [mfn]))
    rest = counted(lambda: k.map_superpages(slot(2), [mfn] * (MAPPINGS - 2)))
    words = spage_words(m, mfn)
    word = ", ".join(f"{n} {spage_word_text(design, i, v)}" for i, (n, v) in enumerate(words)) \
        if words else "(no word)"
    unmap = counted(lambda: k.unmap(slot(0), MAPPINGS))
    assert audit(m).ok
    total = {key: first[key] + second[key] + rest[key] for key in first}
    return {"first": first, "second": second, "total": total, "unmap": unmap, "word": word,
            "metadata": m.superpage.metadata_bytes()}


print(__doc__.split("\n\n")[0])
print()
print(__doc__.split("\n\n")[2])
print()
rows = {d: measure(d) for d in DESIGNS}
print(f"{'':16} {'first map':>19} {'second map':>19} {f'{MAPPINGS} maps in all':>23} "
      f"{f'{MAPPINGS} unmaps':>14}")
print(f"{'design':16} {'frame refs':>11} {'count':>7} {'frame refs':>11} {'count':>7} "
      f"{'frame refs':>11} {'count':>11} {'frame refs':>14}  the word after {MAPPINGS} maps")
for d, r in rows.items():
    f, s, t = r["first"], r["second"], r["total"]
    print(f"{d:16} {f['get_page_type']:>11,} {f['count_updates']:>7} {s['get_page_type']:>11,} "
          f"{s['count_updates']:>7} {t['get_page_type']:>11,} {t['count_updates']:>11,} "
          f"{r['unmap']['put_page_type']:>14,}  {r['word']}")
print("(frame refs: get_page_type, one per frame, each with a get_page; count: cmpxchg of "
      "the superpage's count)")
print()
pm, x41 = rows["per-mapping"], rows["xen-4.1"]
print(f"refcount operations per mapping (get_page_type per PSE entry, {MAPPINGS} entries): "
      f"per-mapping {pm['total']['get_page_type'] // MAPPINGS}, "
      f"xen-4.1 {x41['total']['get_page_type'] // MAPPINGS}")
print(f"{MAPPINGS} mappings: per-mapping {pm['total']['get_page_type']:,} get_page_type, "
      f"xen-4.1 {x41['total']['get_page_type']:,} and {x41['total']['count_updates']} count updates")
print()
print("Every get_page_type is an atomic cmpxchg on a frame word, and so is every get_page:")
print("per-mapping makes 1,024 of them per map and per unmap, whatever else maps the "
      "superpage, and its frames end with one typed reference per mapping: 'so slow that "
      "applications become unusable' (2010).")
print("The counted designs pay the 1,024 atomics once (count 0 -> 1), then one cmpxchg of "
      "the superpage's count per map or unmap. What differs between them is where the count "
      "lives and what that costs (examples/c_memory_cost.py), whether read-only mappings take "
      "types (superpage-info: no), and whether the count is race-free "
      "(examples/d_sketch_race.py: the sketch is not).")
