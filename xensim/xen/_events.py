"""The machine's event bus: one :class:`Events` per :class:`~xensim.xen.Machine`
(``Machine.events``), through which observers (the concurrency explorer, the
tracer, the explorer scenarios' cmpxchg reports, the incremental auditor) see what the machine does, without wrapping its
methods or reading its private fields.

Every event has a fixed name and argument list and is emitted at the one place
where the thing it names happens. For each event the bus keeps an attribute of
that name: ``None`` while nobody listens, else a callable taking the event's
arguments (the subscriber itself when there is one, a dispatcher calling each
in subscription order when there are several). An emit point is therefore::

    ev = machine.events.word_changed
    if ev is not None:
        ev(page, "count_info", old, new, why)

and costs an ``is not None`` test when nobody listens. The hottest emitters (the
reference primitives, the superpage table, the hypercall layer) are *attached*
(:meth:`Events.attach`):
they carry the per-event attributes themselves, kept equal to the bus's, so their
test is one attribute load (``self.atomic_step``). Where one place emits a pair of
events, a group attribute (``observe_request``, ``observe_entry_get``,
``observe_entry_put``: True while any member has a subscriber, else None) makes the
unobserved path one test. Arguments that cost something to compute (copies of words)
are computed only behind that test.

**Modes.** An observer that must see every atomic step says so when it subscribes:
``atomic_step`` always does, any other event with ``subscribe(name, fn, steps=True)``
(and :meth:`Events.stepwise` holds the machine stepwise with no subscriber at all).
``steps`` is True while any such subscription exists. The bus calls its watchers
(:meth:`Events.watch`; the machine's) after every change of its subscriptions: the
machine recomputes its mode there, and which implementation each accelerated slot
calls (xensim.xen.accel). Emit points test their own event only; no code of the
machine chooses a path by looking at subscribers.

The events (``page`` is a PDX, the index of a frame's page_info; ``spdx`` is
``pdx >> 9``, a superpage's index; docs/xen-facts.md sections 3 and 5):

``atomic_step(kind, key, arg)``
    before each atomic step, i.e. each read-modify-write of one word (the
    explorer's switch point). ``kind`` / ``key`` / ``arg``: ``get_page``
    (page, domid), ``put_page`` (page, 0), ``get_page_type`` (page, type),
    ``put_page_type`` (page, 0), ``set_validated`` (page, type),
    ``type_flags`` / ``count_flags`` (page, 0: a pin or PGC_allocated bit),
    ``wait_validated`` (page, the type_info seen: __get_page_type spins until
    the word differs), ``sp_load`` / ``sp_store`` / ``sp_cas`` (spdx, word: a
    superpage-table word), ``sp_wait`` (spdx, word: a design spinning until the
    word differs from what it read, e.g. a lock bit), ``pi_load`` / ``pi_cas`` (the superpage's first page,
    0: pageinfo-count's page_info field), ``hcall`` (caller domid, hypercall
    number: entering a hypercall), ``pause`` (domid: domain_kill pausing it).
    **A subscriber makes the machine stepwise** (every accelerator off: the
    512-frame forms run their per-frame loops), and a ``wait_validated``
    or ``sp_wait`` spin is allowed (with nobody listening it is a RefcountBug: no other CPU
    can ever finish the validation).
``word_changed(page, word, old, new, why)``
    a scalar cmpxchg changed one frame's ``word`` (``"count_info"`` or
    ``"type_info"``) from ``old`` to ``new``; ``why`` names the primitive
    (``get_page``, ``put_page_type``, ``get_page_type(writable)``, ``pin``,
    ``validated``, ``undo`` ...).
``tlb_flush(page, d, stamp, clock)``
    a type change of ``page`` made Xen flush domain ``d``'s CPU: the frame's
    last typed reference went at TLB clock ``stamp``, not before that CPU's
    last flush; ``clock`` is the TLB clock after the flush.
``range_get(first, n, d, type)`` / ``range_got(first, n, d, type, result)``
    before / after taking get_page (and get_page_type(``type``) unless
    ``type`` is None) on frames [first, first+n) for domain ``d`` in one
    vectorised call (``RefCounts.get_pages_and_type``); ``result`` is its
    :class:`~xensim.xen.RangeResult`. ``RefCounts.get_runs_and_type`` (many
    runs at once) emits ``range_get`` for every run, in order, then takes
    them all, then ``range_got`` for every run with ``RangeResult(True, n)``.
``range_put(first, n, typed)``
    before put_page_type (if ``typed``) and put_page on frames
    [first, first+n) in one vectorised call (``put_pages_and_type``; every run
    of ``put_runs_and_type``, all before any is put). Frames freed by it
    follow as ``pages_freed``.
``pages_freed(pages, owners)``
    frames whose general count reached 0 went back to the heap (after it):
    ``pages`` an int64 array, ``owners`` their owners' domids before (an
    array of the same length).
``spage_cmpxchg(where, spdx, word, expected, found, new, won)``
    a cmpxchg of a superpage count word, won or lost (once it has read the word,
    before a winning one stores ``new``): ``where`` is
    ``"spage_table"`` (word ``word`` of the superpage table's entry) or
    ``"page_info"`` (pageinfo-count's field in the superpage's first page_info;
    ``word`` 0); ``found`` is what the word held.
``spage_write(where, spdx, word, old, new)``
    a plain store to one superpage word (Xen 4.1's faithful underflow).
``spage_write_many(where, spdx, word, old, new)``
    a batch (one mmu_update of many PSE entries) wrote many superpage words at
    once: ``spdx``, ``old`` and ``new`` are arrays of the same length.
``frames_written(pdx, n)``
    a store is about to change page_info words (``count_info``, ``type_info`` or
    ``owner``) of frames [pdx, pdx+n) through the frame table's own setters or a
    writable slice (the storage level, below the reference primitives; the
    many-run forms write whole groups and emit ``range_get`` / ``range_put``).
``guest_write(mfn, index, old, new)``
    a store into the contents of guest frame ``mfn`` (a page-table entry, written
    by the hypervisor or, in tests, behind its back): ``index``, ``old`` and ``new``
    are ints, or arrays of the same length for a write of many entries.
``request_enter()`` / ``request_leave(rc)``
    around ``Machine.request`` (one request of a batch, all or nothing; also
    a nested one): ``rc`` is its result after any rollback, None when it
    raised.
``entry_get_begin(level, e, d, table)`` / ``entry_get_end(level, e, d, table, rc)``
    around validating a present entry ``e`` of a level-``level`` table
    ``table`` (an MFN, or None) for domain ``d`` (``get_page_from_entry``):
    ``rc`` 0 or -errno; None when it raised.
``entry_put_begin(level, e, table)`` / ``entry_put_end(level, e, table)``
    around dropping what a present entry held (``put_page_from_entry``);
    ``entry_put_end`` also when it raised.
``hypercall_enter(caller, number, args)`` / ``hypercall_leave(caller, number, args, rc)``
    around one hypercall (before and after it ran; ``args`` the tuple passed).

``subscribe(name, fn, steps=False)`` returns a :class:`Subscription`;
``unsubscribe(sub)`` removes it; ``listening(name=fn, ...)`` is a context manager
subscribing several at once. An unknown name raises ValueError. A deep copy of the
bus (``copy.deepcopy`` of a machine) deep-copies its subscribers, watchers and
attached emitters with it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable, Iterator

#: per group, the events it stands for: the group's attribute is True while any of them
#: has a subscriber, else None (one test at an emit point that pairs two events)
GROUPS: dict[str, tuple[str, ...]] = {
    "observe_request": ("request_enter", "request_leave"),
    "observe_entry_get": ("entry_get_begin", "entry_get_end"),
    "observe_entry_put": ("entry_put_begin", "entry_put_end"),
}

#: the events whose subscribers need every atomic step (the machine runs stepwise)
STEP_EVENTS = ("atomic_step",)

#: every event and its arguments, in the order of the module docstring
EVENTS: dict[str, tuple[str, ...]] = {
    "atomic_step": ("kind", "key", "arg"),
    "word_changed": ("page", "word", "old", "new", "why"),
    "tlb_flush": ("page", "d", "stamp", "clock"),
    "range_get": ("first", "n", "d", "type"),
    "range_got": ("first", "n", "d", "type", "result"),
    "range_put": ("first", "n", "typed"),
    "pages_freed": ("pages", "owners"),
    "spage_cmpxchg": ("where", "spdx", "word", "expected", "found", "new", "won"),
    "spage_write": ("where", "spdx", "word", "old", "new"),
    "spage_write_many": ("where", "spdx", "word", "old", "new"),
    "frames_written": ("pdx", "n"),
    "guest_write": ("mfn", "index", "old", "new"),
    "request_enter": (),
    "request_leave": ("rc",),
    "entry_get_begin": ("level", "e", "d", "table"),
    "entry_get_end": ("level", "e", "d", "table", "rc"),
    "entry_put_begin": ("level", "e", "table"),
    "entry_put_end": ("level", "e", "table"),
    "hypercall_enter": ("caller", "number", "args"),
    "hypercall_leave": ("caller", "number", "args", "rc"),
}


class Subscription:
    """One subscriber of one event (what :meth:`Events.subscribe` returns); ``steps``:
    it needs every atomic step."""
    __slots__ = ("name", "fn", "steps")

    def __init__(self, name: str, fn: Callable, steps: bool = False):
        self.name = name
        self.fn = fn
        self.steps = steps or name in STEP_EVENTS

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, {self.fn!r})"


def _dispatcher(fns: tuple[Callable, ...], arity: int) -> Callable:
    """One callable calling each of ``fns`` in order with an event's ``arity`` arguments
    (the common pair, the fuzzer's journal and auditor, of the per-frame events with
    their exact arity: no tuple packed)."""
    if len(fns) == 2:
        first, second = fns
        if arity == 2:                   # frames_written, pages_freed
            def dispatch(a, b):
                first(a, b)
                second(a, b)
            return dispatch
        if arity == 3:                   # range_put
            def dispatch(a, b, c):
                first(a, b, c)
                second(a, b, c)
            return dispatch
        if arity == 4:                   # guest_write, range_get
            def dispatch(a, b, c, d):
                first(a, b, c, d)
                second(a, b, c, d)
            return dispatch

        def dispatch(*args):
            first(*args)
            second(*args)
        return dispatch

    def dispatch(*args):
        for fn in fns:
            fn(*args)
    return dispatch


class Events:
    """The machine's events: per event an attribute, None while nobody listens."""
    __slots__ = tuple(EVENTS) + tuple(GROUPS) + ("steps", "_subs", "_mirrors", "_watchers",
                                                 "_holds")

    def __init__(self):
        self._subs: dict[str, list[Subscription]] = {name: [] for name in EVENTS}
        #: (object, event names): objects whose attributes of those names follow the bus's
        self._mirrors: list[tuple[object, tuple[str, ...]]] = []
        #: called with no argument after every change of the subscriptions
        self._watchers: list[Callable[[], None]] = []
        #: open :meth:`stepwise` blocks
        self._holds = 0
        #: True while a subscriber needs every atomic step (or a stepwise block is open)
        self.steps = False
        for name in EVENTS:
            setattr(self, name, None)
        for group in GROUPS:
            setattr(self, group, None)

    def attach(self, obj: object, names: tuple[str, ...]) -> None:
        """Give ``obj`` an attribute per event of ``names``, always equal to the bus's
        (None or the dispatcher): an emit point in ``obj`` then tests ``self.<name>``,
        one attribute load. Only the bus sets them."""
        for name in names:
            if name not in EVENTS:
                raise ValueError(f"unknown event {name!r}")
            setattr(obj, name, getattr(self, name))
        self._mirrors.append((obj, tuple(names)))

    def watch(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every change of the subscriptions (and once now)."""
        self._watchers.append(fn)
        fn()

    def subscribe(self, name: str, fn: Callable, *, steps: bool = False) -> Subscription:
        """Call ``fn`` with the event's arguments each time ``name`` is emitted; ``steps``:
        the subscriber needs every atomic step (the machine runs stepwise while it is on)."""
        subs = self._subs.get(name)
        if subs is None:
            raise ValueError(f"unknown event {name!r}; the events are {', '.join(EVENTS)}")
        sub = Subscription(name, fn, steps)
        subs.append(sub)
        self._rebuild(name)
        return sub

    @contextmanager
    def stepwise(self) -> Iterator["Events"]:
        """``with events.stepwise(): ...``: the machine runs stepwise inside (every
        operation by its scalar path), with or without subscribers."""
        self._holds += 1
        self._changed()
        try:
            yield self
        finally:
            self._holds -= 1
            self._changed()

    def _changed(self) -> None:
        self.steps = self._holds > 0 or any(s.steps for subs in self._subs.values() for s in subs)
        for fn in self._watchers:
            fn()

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (ValueError if it is not one of this bus's)."""
        subs = self._subs.get(sub.name, [])
        for i, s in enumerate(subs):
            if s is sub:
                del subs[i]
                self._rebuild(sub.name)
                return
        raise ValueError(f"{sub!r} is not subscribed")

    @contextmanager
    def listening(self, **fns: Callable) -> Iterator["Events"]:
        """``with events.listening(word_changed=f, atomic_step=g): ...``"""
        subs = []
        try:
            for name, fn in fns.items():
                subs.append(self.subscribe(name, fn))
            yield self
        finally:
            for sub in reversed(subs):
                self.unsubscribe(sub)

    def subscribers(self, name: str) -> list[Callable]:
        """The functions subscribed to ``name``, in order."""
        if name not in self._subs:
            raise ValueError(f"unknown event {name!r}")
        return [s.fn for s in self._subs[name]]

    def _rebuild(self, name: str) -> None:
        fns = tuple(s.fn for s in self._subs[name])
        value = None if not fns else fns[0] if len(fns) == 1 else _dispatcher(fns, len(EVENTS[name]))
        setattr(self, name, value)
        for obj, names in self._mirrors:
            if name in names:
                setattr(obj, name, value)
        for group, members in GROUPS.items():
            if name in members:
                setattr(self, group, True if any(self._subs[n] for n in members) else None)
        self._changed()

    def __deepcopy__(self, memo) -> "Events":
        new = Events()
        memo[id(self)] = new
        new._mirrors = [(copy.deepcopy(obj, memo), names) for obj, names in self._mirrors]
        new._holds = self._holds
        for name, subs in self._subs.items():
            for s in subs:
                new.subscribe(name, copy.deepcopy(s.fn, memo), steps=s.steps)
        # the copies' slots and mode are copied with them: the watchers are not called
        new._watchers = [copy.deepcopy(fn, memo) for fn in self._watchers]
        return new

    def __repr__(self) -> str:
        busy = {n: len(s) for n, s in self._subs.items() if s}
        return f"Events({busy or 'no subscribers'})"
