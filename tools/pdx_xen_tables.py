#!/usr/bin/env python3
"""Compute Xen's own PDX offset tables for given region lists, with Xen's pdx.c.

    python tools/pdx_xen_tables.py XEN_GIT_DIR > tests/data/pdx-offset-xen.json

Builds ``xen/common/pdx.c`` of RELEASE-4.21.0 and RELEASE-4.22.0 with Xen's own test
harness (``tools/tests/pdx/harness.h``, offset compression, a release build's
``ASSERT_UNREACHABLE``) and a small driver of ours, then runs every region list of
``CASES`` (Xen's harness cases, xensim's own and seeded random maps) through both and
prints, per list and release, ``[pfn_index_shift, pdx_index_shift, {slot: [pfn_base,
pfn_pdx_lookup]}]`` or null (no compression). ``tests/mem/test_pdx.py`` checks
``make_pdx(..., "offset")`` (4.22) and ``"offset-4.21.0"`` against the file.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

RELEASES = {"4.21.0": "RELEASE-4.21.0", "4.22.0": "RELEASE-4.22.0"}

NAMED_CASES = [
    # -- tools/tests/pdx/test-pdx.c at RELEASE-4.21.0 and RELEASE-4.22.0 --
    ('harness: 4s Intel GNR', [(0x0, 0x80000), (0x100000, 0x8080000), (0x63e80000, 0x6be80000), (0xc7e80000, 0xcfe80000), (0x12be80000, 0x133e80000)]),
    ('harness: simple hole', [(0x0, 0x40000), (0x1000000000, 0x1000040000)]),
    ('harness: simple hole, unsorted', [(0x1000000000, 0x1000040000), (0x0, 0x40000)]),
    ('harness: 2 ranges under the low mask', [(0x0, 0x40000), (0x80000, 0xc0000), (0x500000, 0x580000)]),
    ('harness: single range not at 0', [(0x280000, 0x2c0000)]),
    ('harness: region size gains nothing', [(0x0, 0x40000), (0x80000, 0xc0000), (0x100000, 0x1c0000), (0x200000, 0x300000)]),
    ('harness: AMD Versal Gen 2', [(0x0, 0x80000), (0x800000, 0x880000), (0x50000000, 0x50080000), (0x60000000, 0x60080000), (0x70000000, 0x70080000)]),
    ('harness: unsorted, lower not at 0', [(0x880000, 0x8c0000), (0x80000, 0xc0000)]),
    ('harness: same high bit', [(0x8000000000, 0x8000040000), (0x80000c0000, 0x8000100000)]),
    ('harness: AMD Naples 2s', [(0x0, 0xa0), (0x100, 0xb0000), (0x100000, 0x430000), (0x430000, 0x830000), (0x830000, 0xc30000), (0xc30000, 0x1030000), (0x1030000, 0x1430000), (0x1430000, 0x1830000), (0x1830000, 0x1c30000), (0x1c30000, 0x2030000)]),
    ('harness: qemu 2 node', [(0x0, 0x80000), (0x100000, 0x180000)]),
    ('harness: smaller than MAX_ORDER', [(0x0, 0x1), (0x100, 0x101)]),
    ('harness: size adjusted to MAX_ORDER', [(0x0, 0x1), (0x100000, 0x100001)]),
    ('harness: 2s Intel CLX, touching', [(0x0, 0x180000), (0x180000, 0x3040000)]),
    ("harness 4.22: Dell R740, dual socket", [(0x0, 0x80000), (0x100000, 0x3070000), (0x3070000, 0x3870000),
                                             (0x3870000, 0x6870000), (0x6870000, 0x7070000)]),
    # -- xensim's: the presets' regions as MemoryMap.pdx_regions lists them, touching and
    #    overlapping regions --
    ('preset firecracker-1g', [(0x0, 0xa0), (0x100, 0x40000)]),
    ('preset qemu-pc-4g', [(0x0, 0xc0000), (0x100000, 0x140000)]),
    ('preset teaching', [(0x0, 0xa0), (0x100, 0x80000), (0x100000, 0x140000)]),
    ('touching: index truncated to bits 19-24', [(0x0, 0x40000), (0x40000, 0x80000), (0x1000000, 0x1040000)]),
    ('touching: a small region then a large one', [(0x0, 0x80000), (0x80000, 0x400000), (0x10000000, 0x10040000)]),
    ('touching: two pairs', [(0x100000, 0x140000), (0x140000, 0x180000), (0x4000000, 0x4040000), (0x4040000, 0x4080000)]),
    ('touching: GNR with its first node split', [(0x0, 0x80000), (0x100000, 0x4080000), (0x4080000, 0x8080000), (0x63e80000, 0x6be80000), (0xc7e80000, 0xcfe80000), (0x12be80000, 0x133e80000)]),
    ('touching once aligned: 0x40100 aligns to 0x40000', [(0x0, 0x10), (0x20, 0x40000), (0x40100, 0x3000000), (0x40000000, 0x40040000)]),
    ('touching once aligned, all in one slot', [(0x0, 0x10), (0x100000, 0x140000), (0x140100, 0x3000000)]),
    ('overlapping once aligned, the last one', [(0x0, 0x10), (0x100000, 0x130000), (0x130100, 0x3000000)]),
    ('overlapping once aligned, in the middle', [(0x0, 0x10), (0x100000, 0x130000), (0x130100, 0x3000000), (0x40000000, 0x40040000)]),
]

DRIVER = r"""
#include "harness.h"
#undef ASSERT_UNREACHABLE
#define ASSERT_UNREACHABLE() do {} while (0)
#include "pdx.c"
int main(void)
{
    unsigned int n;
    while ( scanf("%u", &n) == 1 )
    {
        pfn_pdx_compression_reset();
        for ( unsigned int j = 0; j < n; j++ )
        {
            unsigned long s, e;
            if ( scanf("%lx %lx", &s, &e) != 2 )
                return 1;
            pfn_pdx_add_region(pfn_to_paddr(s), pfn_to_paddr(e - s));
        }
        if ( !pfn_pdx_compression_setup(0) )
        {
            printf("=none\n");
            continue;
        }
        printf("=%u %u", pfn_index_shift, pdx_index_shift);
        for ( unsigned int i = 0; i < CONFIG_PDX_NR_LOOKUP; i++ )
            if ( pfn_bases[i] != ~0UL )
                printf(" %u:%lx:%lx", i, pfn_bases[i], pfn_pdx_lookup[i]);
        printf("\n");
    }
    return 0;
}
"""


def random_map(rng: random.Random) -> list[tuple[int, int]]:
    """1-8 regions: small, power-of-two or odd sizes; gaps none, small or large; some
    overlapping once their bases are aligned down to 2^18."""
    cur, regions = rng.choice([0, rng.randrange(0, 1 << 20)]), []
    for _ in range(rng.randint(1, 8)):
        size = rng.choice([1, 0xa0, 1 << rng.randint(10, 26), rng.randrange(1, 1 << rng.randint(12, 28))])
        regions.append((cur, cur + size))
        cur += size + rng.choice([0, 0, rng.randrange(0, 1 << 18), 1 << rng.randint(18, 36),
                                  rng.randrange(1, 1 << rng.randint(18, 34))])
        if rng.random() < 0.15:
            cur = regions[-1][1] + rng.randrange(1, 0x100)
    return regions


def build(git: str, tag: str, out: Path) -> Path:
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", git, "show", f"{tag}:{path}"], check=True,
                              capture_output=True, text=True).stdout
    (out / "xen-tools").mkdir(parents=True)
    (out / "xen-tools" / "common-macros.h").write_text(show("tools/include/xen-tools/common-macros.h"))
    (out / "harness.h").write_text(show("tools/tests/pdx/harness.h"))
    (out / "pdx.h").write_text("".join(ln for ln in show("xen/include/xen/pdx.h").splitlines(True)
                                       if not ln.lstrip().startswith("#include")))
    (out / "pdx.c").write_text(show("xen/common/pdx.c"))
    (out / "driver.c").write_text(DRIVER)
    exe = out / "pdx-offset"
    subprocess.run(["cc", "-O1", "-w", f"-I{out}", "-D__XEN_TOOLS__",
                    "-DCONFIG_PDX_OFFSET_COMPRESSION", "-o", str(exe), str(out / "driver.c")],
                   check=True)
    return exe


def run(exe: Path, cases: list[list[tuple[int, int]]]) -> list:
    text = "".join(f"{len(c)} " + " ".join(f"{s:x} {e:x}" for s, e in c) + "\n" for c in cases)
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
    results = []
    for line in out.splitlines():
        if not line.startswith("="):
            continue                                # the set-up's own printk lines
        if line == "=none":
            results.append(None)
            continue
        pfn_shift, pdx_shift, *slots = line[1:].split()
        results.append([int(pfn_shift), int(pdx_shift),
                        {s.split(":")[0]: [int(s.split(":")[1], 16), int(s.split(":")[2], 16)]
                         for s in slots}])
    assert len(results) == len(cases)
    return results


def main() -> None:
    git = sys.argv[1]
    rng = random.Random(24)
    named = [(name, list(regions)) for name, regions in NAMED_CASES]
    cases = named + [(f"random {i}", random_map(rng)) for i in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        results = {rel: run(build(git, tag, Path(tmp) / rel), [c for _, c in cases])
                   for rel, tag in RELEASES.items()}
    # every named case; of the random maps, those the releases answer differently and as
    # many that they answer alike
    rows = []
    same = 0
    for i, (name, regions) in enumerate(cases):
        r = {rel: results[rel][i] for rel in RELEASES}
        differ = r["4.21.0"] != r["4.22.0"]
        if name.startswith("random") and not differ:
            if same >= 20:
                continue
            same += 1
        rows.append({"name": name, "regions": [list(x) for x in regions], **r})
    json.dump(rows, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
