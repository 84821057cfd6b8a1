"""The accelerator contract and the one place the machine's mode is decided.

An :class:`Accelerator` is a faster way to run one *slot* of the machine: a method
whose class body is Xen's algorithm, the scalar path (``Machine.mmu_update_requests``,
``RefCounts.take_run``, ``PageTables.alloc_l1_table`` ...). It declares

* ``slot``: (owner, method): the owner is ``"machine"``, ``"refs"`` or ``"pt"``;
* ``precondition``: in words, when it applies; ``apply(owner, *args)`` checks it and
  returns the slot's result, or None (not applicable: nothing was changed, the scalar
  path runs);
* ``preempt_point``: the slot asks ``hypercall_preempt_check()``: not applicable while
  the machine's preemption source (``Machine.preempt``) can answer true;
* ``hides``: the events it does not emit although the scalar path would (a request's
  ``request_enter``, a scalar ``word_changed`` ...): while any of them has a
  subscriber it is not used. Every accelerator reports what it writes through the
  public APIs of the frame table, RefCounts and the superpage table, so the
  run-form events (``frames_written``, ``range_*``, ``pages_freed``,
  ``guest_write``) and the statistics are those of the scalar path.

:func:`bind` computes ``machine.mode``: ``"stepwise"`` while the explorer interleaves
CPUs (``Machine.concurrent``) or a subscriber needs every atomic step
(``Events.steps``), else ``"vectorised"``; and binds each slot: in stepwise mode (or
with no usable accelerator) the owner's own method, else an :class:`Accelerated`
trying its accelerators first. The machine calls it whenever the subscriptions or
``concurrent`` change.
"""

from __future__ import annotations

STEPWISE = "stepwise"
VECTORISED = "vectorised"


class Accelerator:
    """One shortcut of one slot (subclasses set the class attributes and ``apply``)."""
    #: (owner, method name) of the slot it accelerates
    slot: tuple[str, str] = ("", "")
    #: when it applies, in words (the docs' table of accelerators prints it)
    precondition: str = ""
    #: events the scalar path emits and this does not: any subscriber turns it off
    hides: tuple[str, ...] = ()
    #: (i, k): the slot's argument i (its len(), or the int itself) must be at least k for
    #: the accelerator to apply at all: a test the slot makes without calling ``apply``
    #: (the unaccelerated call of a hot slot, one request, pays no call)
    min_size: tuple[int, int] | None = None
    #: the slot holds a ``hypercall_preempt_check()`` point (do_mmu_update's loop): the
    #: accelerator does not apply while the machine's preemption source can answer true
    #: (``Machine.preempt`` other than never), which only the scalar path asks
    preempt_point: bool = False

    def apply(self, owner, *args):
        """The slot's result, or None: not applicable, nothing changed."""
        raise NotImplementedError

    def __deepcopy__(self, memo) -> "Accelerator":
        return self                      # stateless: a machine's copy shares them

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accelerated:
    """A slot in vectorised mode: each accelerator in turn, then the scalar method."""
    __slots__ = ("owner", "scalar", "accelerators", "gate")

    def __init__(self, owner, scalar, accelerators: tuple[Accelerator, ...]):
        self.owner = owner
        #: the owner's own method (Xen's algorithm)
        self.scalar = scalar
        self.accelerators = accelerators
        #: the smallest min_size of them all, when every one declares one on the same
        #: argument (below it none applies: the scalar method at once), else None
        sizes = {a.min_size for a in accelerators}
        self.gate = None
        if None not in sizes and len({i for i, _ in sizes}) == 1:
            self.gate = (next(iter(sizes))[0], min(k for _, k in sizes))

    def __call__(self, *args):
        gate = self.gate
        if gate is not None:
            v = args[gate[0]]
            if (v if v.__class__ is int else len(v)) < gate[1]:
                return self.scalar(*args)
        for a in self.accelerators:
            r = a.apply(self.owner, *args)
            if r is not None:
                return r
        return self.scalar(*args)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Accelerated) and other.owner is self.owner
                and other.scalar == self.scalar and other.accelerators == self.accelerators)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Accelerated({self.scalar.__name__}, {list(self.accelerators)})"


#: every accelerator, in the order each slot tries them (filled by the modules)
ACCELERATORS: list[Accelerator] = []


def register(accel: Accelerator) -> Accelerator:
    ACCELERATORS.append(accel)
    return accel


def slots() -> list[tuple[str, str]]:
    """Every accelerated slot, (owner, method), in registration order."""
    return list(dict.fromkeys(a.slot for a in ACCELERATORS))


def _owner(machine, name: str):
    return machine if name == "machine" else getattr(machine, name)


def bind(machine) -> str:
    """Set ``machine.mode`` and bind every slot to its implementation (see module doc)."""
    ev = machine.events
    mode = STEPWISE if machine.concurrent or ev.steps else VECTORISED
    machine.mode = mode
    preempting = machine.preempt.pending is not None
    for owner_name, method in slots():
        owner = _owner(machine, owner_name)
        usable = () if mode == STEPWISE else tuple(
            a for a in ACCELERATORS if a.slot == (owner_name, method)
            and not (preempting and a.preempt_point)
            and all(getattr(ev, e) is None for e in a.hides))
        if usable:
            scalar = getattr(type(owner), method).__get__(owner)
            setattr(owner, method, Accelerated(owner, scalar, usable))
        else:
            owner.__dict__.pop(method, None)          # the class's method: the scalar path
    return mode
