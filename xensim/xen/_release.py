"""The Xen releases xensim models, as one ordered type.

``Release.parse("4.8")`` gives ``Release.R4_8``; releases compare in release order
(``m.release >= Release.R4_5``), and ``str(release)`` is the version as written
("4.8"), the form configs, scenarios and every output use.  The modelled releases
are the members, oldest first: the four whose source docs/xen-facts.md was checked
against (its introduction; its rows name the releases each fact holds for).
"""

from __future__ import annotations

import enum

__all__ = ["Release", "RELEASE_NAMES", "LATEST_RELEASE"]


class Release(enum.IntEnum):
    """A modelled Xen release, ordered oldest first.

    The values are ``100 * major + minor`` so that comparisons are plain integer
    ones (the page-table code tests the release on hot paths); what a release is
    *called* is ``str()``: "4.8".
    """

    R4_1 = 401
    R4_5 = 405
    R4_7 = 407
    R4_8 = 408

    def __str__(self) -> str:
        return f"{self.value // 100}.{self.value % 100}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Release.{self.name}"

    @classmethod
    def parse(cls, text: "str | Release") -> "Release":
        """The release written ``text`` ("4.8"); ValueError naming the modelled ones."""
        if isinstance(text, Release):
            return text
        for release in cls:
            if str(release) == text:
                return release
        raise ValueError(f"unknown Xen version {text!r}; choose from {', '.join(RELEASE_NAMES)}")


#: the modelled versions as written, oldest first ("4.1", "4.5", "4.7", "4.8")
RELEASE_NAMES: tuple[str, ...] = tuple(str(r) for r in Release)
#: the release simulated when none is named
LATEST_RELEASE = Release.R4_8
