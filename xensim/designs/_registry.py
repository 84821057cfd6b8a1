"""The registry: every design by name, checked before it is taken in.

:data:`REGISTRY` holds the designs in registration order (the order runs compare them
in): the built-ins, then installed packages' (entry points), then design files'. Look
names up with ``design_names()`` / ``design_class()`` / ``make_design()`` (``_loading``),
which load the entry points first.
"""

from __future__ import annotations

from ._superpage import SuperpageDesign

#: every design, by name, in registration order
REGISTRY: dict[str, type[SuperpageDesign]] = {}

#: the interface's methods a design must define itself (the base class's raise)
REQUIRED_METHODS = ("get_superpage", "put_superpage", "expect")


def _shown(value: object) -> str:
    if isinstance(value, (int, float, str)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def check_design(cls) -> str | None:
    """What is wrong with ``cls`` as a design (None: nothing): a SuperpageDesign subclass
    with a ``name`` (a non-empty string without spaces), ``words_per_entry`` 1 or 2 (the
    superpage table's entry), boolean flags, a string ``description``, ``words_in`` one
    of its three places, ``word_names`` strings (at most ``words_per_entry`` of them in the
    superpage table), and the interface's methods (:data:`REQUIRED_METHODS`) of its own."""
    if not (isinstance(cls, type) and issubclass(cls, SuperpageDesign)):
        return f"not a subclass of SuperpageDesign: {_shown(cls)}"
    name = cls.name
    if not isinstance(name, str) or not name or name.split() != [name]:
        return f"name must be a non-empty string without spaces, got {_shown(name)}"
    w = cls.words_per_entry
    if isinstance(w, bool) or not isinstance(w, int) or w not in (1, 2):
        return (f"words_per_entry must be 1 or 2 (64-bit words of its superpage-table "
                f"entry), got {_shown(w)}")
    for flag in ("supports_pse", "supports_mark", "buggy", "keeps_count", "default",
                 "preemptible_take"):
        if not isinstance(getattr(cls, flag), bool):
            return f"{flag} must be True or False, got {_shown(getattr(cls, flag))}"
    if not isinstance(cls.description, str):
        return f"description must be a string, got {_shown(cls.description)}"
    if cls.words_in not in ("spage_table", "page_info", None):
        return (f"words_in must be 'spage_table', 'page_info' or None, got "
                f"{_shown(cls.words_in)}")
    names = cls.word_names
    if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names)
            and (names or cls.words_in is None)):
        return (f"word_names must be a tuple of strings (one at least where words_in is "
                f"not None), got {_shown(names)}")
    if cls.words_in == "spage_table" and len(names) > w:
        return (f"word_names names {len(names)} words, but words_per_entry is {w} (the "
                f"words of its superpage-table entry)")
    missing = [m for m in REQUIRED_METHODS if getattr(cls, m) is getattr(SuperpageDesign, m)]
    if missing:
        return (f"does not define {', '.join(missing)} (a design defines "
                f"{', '.join(REQUIRED_METHODS)}; see docs/designs/writing-a-design.md)")
    return None


def register(cls: type[SuperpageDesign]) -> type[SuperpageDesign]:
    """Class decorator: make a design selectable by its ``name``. ValueError if the class
    is not a valid design (:func:`check_design`) or another class has the name."""
    problem = check_design(cls)
    if problem:
        raise ValueError(f"design class {getattr(cls, '__name__', cls)}: {problem}")
    taken = REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"design class {cls.__name__}: the name {cls.name!r} is taken by "
                         f"{taken.__module__}.{taken.__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


def default_design() -> str:
    """The name of the design simulated when a config names none."""
    for name, cls in REGISTRY.items():
        if cls.default:
            return name
    return next(iter(REGISTRY))
