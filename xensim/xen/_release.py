"""The Xen releases xensim models, as one ordered type.

``Release.parse("4.8")`` gives ``Release.R4_8``; releases compare in release order
(``m.release >= Release.R4_5``), and ``str(release)`` is the version as written
("4.8"), the form configs, scenarios and every output use.  :data:`RELEASES` lists
the modelled releases, oldest first: those whose source docs/xen-facts.md was
checked against (its introduction; its rows name the releases each fact holds for).

4.22 is today's Xen: it has no PV superpages (removed in 4.10, commits 56fff3e5e9 and
d3b4e23c06), so the ``none`` design is Xen itself there, and a superpage design run on
it is *hypothetical*, as if merged into today's Xen (:func:`release_label` says so).
"""

from __future__ import annotations

__all__ = ["Release", "RELEASES", "RELEASE_NAMES", "LATEST_RELEASE", "NEWEST_RELEASE",
           "release_label"]


class Release(int):
    """A modelled Xen release: ``Release.R4_1`` .. ``Release.R4_22``, ordered oldest first.

    The value is ``100 * major + minor``, so that a comparison is a plain integer
    one (the page-table code tests the release on hot paths) and a member is a plain
    class attribute; what a release is *called* is ``str()``: "4.8".
    """

    __slots__ = ()

    R4_1: Release
    R4_5: Release
    R4_7: Release
    R4_8: Release
    R4_10: Release
    R4_11: Release
    R4_22: Release

    def __new__(cls, major: int, minor: int) -> "Release":
        return super().__new__(cls, 100 * major + minor)

    @property
    def major(self) -> int:
        return int(self) // 100

    @property
    def minor(self) -> int:
        return int(self) % 100

    @property
    def pv_superpages(self) -> bool:
        """Has this release PV superpages (the allowsuperpage option, PSE in a PV L2,
        MMUEXT_MARK_SUPER)? Up to 4.9; removed in 4.10 (56fff3e5e9, d3b4e23c06)."""
        return self < Release.R4_10

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Release.R{self.major}_{self.minor}"

    def __reduce__(self):                   # pickles (multiprocessing) as the same member
        return (Release.parse, (str(self),))

    def __copy__(self) -> "Release":
        return self

    def __deepcopy__(self, memo: dict) -> "Release":
        return self

    @classmethod
    def parse(cls, text: "str | Release") -> "Release":
        """The modelled release written ``text`` ("4.8"); ValueError naming the modelled ones."""
        if isinstance(text, Release) and text in RELEASES:
            return RELEASES[RELEASES.index(text)]
        for release in RELEASES:
            if str(release) == text:
                return release
        raise ValueError(f"unknown Xen version {text!r}; choose from {', '.join(RELEASE_NAMES)}")


Release.R4_1 = Release(4, 1)
Release.R4_5 = Release(4, 5)
Release.R4_7 = Release(4, 7)
Release.R4_8 = Release(4, 8)
Release.R4_10 = Release(4, 10)           # bounds, not modelled: PV superpages removed,
Release.R4_11 = Release(4, 11)           # decrease_reservation's unpin removed (XSA-252)
Release.R4_22 = Release(4, 22)

#: the modelled releases, oldest first
RELEASES: tuple[Release, ...] = (Release.R4_1, Release.R4_5, Release.R4_7, Release.R4_8,
                                 Release.R4_22)
#: the same as written ("4.1", "4.5", "4.7", "4.8", "4.22"): a config's hypervisor.version choices
RELEASE_NAMES: tuple[str, ...] = tuple(str(r) for r in RELEASES)
#: the release simulated when none is named: the newest with PV superpages
LATEST_RELEASE = Release.R4_8
#: today's Xen
NEWEST_RELEASE = Release.R4_22


def release_label(release: Release, pse: bool = False, design: str = "") -> str:
    """Which Xen produced an output: "Xen 4.8"; on a release without PV superpages, a
    design with them (``pse``) is hypothetical: "Xen 4.22, hypothetical: xen-4.1 as if
    merged into today's Xen"."""
    if release.pv_superpages or not pse:
        return f"Xen {release}"
    what = f"{design} as if merged" if design else "as if merged"
    return f"Xen {release}, hypothetical: {what} into today's Xen"
