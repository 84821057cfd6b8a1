"""What each superpage design costs in memory, on the real machines of configs/machines.

Run it:  python examples/c_memory_cost.py

The 2010 thread weighed an extra 8-byte count in every page_info (8 B per 4 KiB
frame: about 0.2% of RAM) against a table with one 8-byte entry per 2 MiB
superpage (about 0.0004%, 512 times less). Each design says what it needs on a
machine (SuperpageDesign.metadata_bytes()); the overhead report (xensim overhead)
adds Xen's own tables for scale: the frame table (32 B of page_info per frame)
and Xen 4.1's dense spage_table, which covered [0, max_pdx / 512) holes included,
where xensim's table is sparse (512-entry chunks only where RAM is).
"""

from xensim import Machine, format_size, list_presets, load_preset, overhead

DESIGNS = ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch"]
seen = {}                                   # preset -> (pageinfo-count, sparse, dense) bytes


def pct(x: float) -> str:
    """0.195% / 0.00038%: three significant digits above 0.01%, two below."""
    if x == 0:
        return "0%"
    return f"{x:.3g}%" if x >= 0.01 else f"{x:.2g}%"


print(__doc__.split("\n\n")[0])
print()
print(__doc__.split("\n\n")[2])
for preset in list_presets():
    mm = load_preset(preset)
    ram = mm.ram_bytes
    print(f"\n{preset}: {format_size(ram)} of RAM over {format_size(mm.max_pfn << 12)} of "
          f"addresses, {len(mm.holes)} hole{'s' if len(mm.holes) != 1 else ''}")
    for design in DESIGNS:
        m = Machine(mm, "mask", superpage=design)
        b = m.superpage.metadata_bytes()
        print(f"  {design:16} {format_size(b):>10}  {pct(100 * b / ram):>9} of RAM")
    o = overhead(Machine(mm, "mask"))
    dense = o.design("xen-4.1-dense-pdx")
    ft = o.design("xen-frame-table")
    print(f"  {'(Xen 4.1 dense)':16} {format_size(dense.bytes):>10}  {pct(dense.percent_of_ram):>9} "
          f"of RAM: spage_table over [0, max_pdx/512), PDX {o.pdx['mode']}")
    print(f"  {'(frame table)':16} {format_size(ft.bytes):>10}  {pct(ft.percent_of_ram):>9} "
          "of RAM: Xen's own page_info, for scale")
    pi, x41 = o.design("pageinfo-count").bytes, o.design("sparse-8B").bytes
    print(f"  pageinfo-count / xen-4.1 = {pi / x41:,.0f}x")
    seen[preset] = (pi, x41, dense.bytes)

print()
big = max(seen, key=lambda p: seen[p][0])          # the largest machine
pi, x41, dense = seen[big]
print(f"8 B per 4 KiB frame is 8 / 4096 = 0.195% of RAM whatever the machine: "
      f"{format_size(pi)} on {big}. 8 B per 2 MiB is 8 / 2,097,152 = 0.00038% (0.0004%): "
      f"{format_size(x41)} there, twice that with superpage-info's two counts. per-mapping "
      "needs nothing, and pays in time instead (examples/b_superpage_designs.py).")
holey = max(seen, key=lambda p: seen[p][2] / seen[p][1])
pi, x41, dense = seen[holey]
print(f"Xen 4.1's dense table also pays for the holes of the memory map: on {holey} it is "
      f"{format_size(dense)}, {dense / x41:.1f} times the sparse table: zeroed entries for "
      "superpages that do not exist.")
