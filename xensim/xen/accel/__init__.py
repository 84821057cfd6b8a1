"""Accelerators: faster forms of some of Xen's operations, behind a contract.

The scalar code in xensim.xen follows Xen's source, one path per operation; the
modules here hold the vectorised shortcuts, each an :class:`Accelerator` of one slot
(see ``_contract``), used only while the machine runs ``vectorised``
(``Machine.mode``). ``tests/xen/test_accel.py`` runs every one against the scalar path.
"""

from ._contract import (ACCELERATORS, STEPWISE, VECTORISED, Accelerated, Accelerator, bind,
                        slots)
from ._mmu import PSE_BATCH_MIN, PlainWriteBatch, PseBatch
from ._removal import VECTOR_MIN_FRAMES, RemoveRun
from ._runs import DropRun, TakeRun
from ._l1 import L1RunGet, L1RunPut, L1ScatteredPut, put_scattered

__all__ = ["ACCELERATORS", "STEPWISE", "VECTORISED", "Accelerated", "Accelerator", "bind",
           "slots", "PSE_BATCH_MIN", "PlainWriteBatch", "PseBatch", "VECTOR_MIN_FRAMES",
           "RemoveRun", "DropRun", "TakeRun", "L1RunGet", "L1RunPut", "L1ScatteredPut",
           "put_scattered"]
