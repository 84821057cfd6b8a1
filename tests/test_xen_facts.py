"""docs/xen-facts.md: its numbers, and the tests it names.

The facts page lists every behaviour of Xen that xensim models, each with the test that
pins it. This file pins the rows that had no test of their own (Xen's hypercall and
command numbers, the basic units), and checks the page itself: every
``tests/file.py::name`` it names is a test that exists, and every row of its fact
tables names a test.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

from xensim.xen._hypercall import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update,
                               HYPERVISOR_mmuext_op, HYPERVISOR_update_va_mapping)
from xensim.xen._memory_op import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                               XENMEM_populate_physmap)
from xensim.xen._mmu import (MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
                         MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
                         MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
                         MMUEXT_UNMARK_SUPER, MMUEXT_UNPIN_TABLE)
from xensim.mem._units import (MAX_ORDER, PAGE_SHIFT, PAGE_SIZE, SUPERPAGE_ORDER,
                           SUPERPAGE_PAGES, SUPERPAGE_SIZE)

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "docs" / "xen-facts.md"


# --------------------------------------------------------------------------
# section 1: units; section 6a: numbers (xen/include/public/xen.h, memory.h)
# --------------------------------------------------------------------------

def test_page_and_superpage_constants():
    """PAGE_SHIFT 12 (asm-x86/page.h), a superpage is PAGETABLE_ORDER 9 = 512 frames =
    2 MiB, and MAX_ORDER is 18 (2 * PAGETABLE_ORDER, Xen 4.1-4.8)."""
    assert (PAGE_SHIFT, PAGE_SIZE) == (12, 4096)
    assert (SUPERPAGE_ORDER, SUPERPAGE_PAGES, SUPERPAGE_SIZE) == (9, 512, 2 << 20)
    assert MAX_ORDER == 2 * SUPERPAGE_ORDER == 18


def test_hypercall_numbers():
    """__HYPERVISOR_mmu_update 1, memory_op 12, update_va_mapping 14, mmuext_op 26
    (public/xen.h, Xen 4.1-4.10)."""
    assert (HYPERVISOR_mmu_update, HYPERVISOR_memory_op, HYPERVISOR_update_va_mapping,
            HYPERVISOR_mmuext_op) == (1, 12, 14, 26)


def test_mmu_update_command_numbers():
    """MMU_NORMAL_PT_UPDATE 0, MMU_MACHPHYS_UPDATE 1, MMU_PT_UPDATE_PRESERVE_AD 2
    (public/xen.h, Xen 4.1-4.10)."""
    assert (MMU_NORMAL_PT_UPDATE, MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD) == (0, 1, 2)


def test_mmuext_command_numbers():
    """MMUEXT_PIN_L1_TABLE 0 .. PIN_L4_TABLE 3, UNPIN_TABLE 4, NEW_BASEPTR 5,
    MARK_SUPER 19, UNMARK_SUPER 20 (public/xen.h, Xen 4.1-4.10)."""
    assert (MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
            MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MMUEXT_NEW_BASEPTR) == (0, 1, 2, 3, 4, 5)
    assert (MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER) == (19, 20)


def test_memory_op_subop_numbers():
    """XENMEM_increase_reservation 0, XENMEM_decrease_reservation 1,
    XENMEM_populate_physmap 6 (public/memory.h, Xen 4.1-4.10)."""
    assert (XENMEM_increase_reservation, XENMEM_decrease_reservation,
            XENMEM_populate_physmap) == (0, 1, 6)


# --------------------------------------------------------------------------
# the page itself
# --------------------------------------------------------------------------

TEST_REF = re.compile(r"tests/((?:\w+/)?test_\w+\.py)::([\w:]+)")


@lru_cache(maxsize=None)
def _tests_in(filename: str) -> frozenset[str]:
    """``name`` and ``Class::name`` of every test function in ``tests/filename``."""
    tree = ast.parse((ROOT / "tests" / filename).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"):
                    names.add(f"{node.name}::{item.name}")
    return frozenset(names)


def _fact_rows() -> list[list[str]]:
    """The rows of the page's four-column fact tables (header and rule excluded)."""
    rows, in_table = [], False
    for line in FACTS.read_text().splitlines():
        if line.startswith("| behaviour"):
            in_table = True
            continue
        if in_table and line.startswith("|---"):
            continue
        if in_table and line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
            continue
        in_table = False
    return rows


def test_every_test_named_in_the_facts_exists():
    refs = TEST_REF.findall(FACTS.read_text())
    assert len(refs) >= 100
    missing = sorted({f"tests/{f}::{n}" for f, n in refs
                      if not (ROOT / "tests" / f).is_file() or n not in _tests_in(f)})
    assert missing == []


def test_every_fact_row_names_its_test():
    rows = _fact_rows()
    assert len(rows) >= 80
    for row in rows:
        assert len(row) == 4, row
        behaviour, where, releases, test = row
        assert behaviour and where and releases, row
        assert TEST_REF.search(test), row


@pytest.mark.parametrize("section", ["## 1. Units", "## 2. `struct page_info`",
                                     "## 3. The reference primitives", "## 4. PV page-table",
                                     "## 5. Superpage", "## 6. The hypercalls",
                                     "## 7. Sparse memory maps", "## 8. Known bugs",
                                     "## 9. Where xensim deliberately differs"])
def test_the_sections_the_repository_cites_exist(section):
    """Code and docs cite 'docs/xen-facts.md section N': the numbering must hold."""
    assert any(line.startswith(section) for line in FACTS.read_text().splitlines())
