"""The registered designs, as ``xensim designs`` lists them: one row per design, read
from each design's class (name, words, PSE, MARK, known bugs, description, docs page);
and as the overhead report lists them: every design's metadata rows on a machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..output import Column, Table
from ._host import SuperpageHost
from ._loading import design_class, design_file_of, design_names
from ._palette import design_color
from ._registry import REGISTRY, default_design
from ._superpage import MetadataRow


@dataclass
class DesignInfo:
    """What a design's class says of itself."""
    name: str
    description: str
    #: where its per-superpage words live ("spage_table", "page_info") or "" (none)
    words_in: str
    word_names: list[str]
    supports_pse: bool
    supports_mark: bool
    buggy: bool
    default: bool
    doc: str
    #: the Python module that defines it
    module: str
    #: the design file it was loaded from ("" for a built-in or an installed package's)
    file: str = ""

    @classmethod
    def of(cls, design: type) -> "DesignInfo":
        return cls(design.name, design.description, design.words_in or "",
                   list(design.word_names), design.supports_pse, design.supports_mark,
                   design.buggy,
                   design.name == default_design(), design.doc, design.__module__,
                   design_file_of(design.name) or "")


@dataclass
class Catalog:
    """Every registered design, in registration order (the order runs compare them in)."""
    designs: list[DesignInfo]

    def to_dict(self) -> dict:
        return {"designs": [asdict(d) for d in self.designs]}

    def tables(self) -> list[Table]:
        def yes(v: bool) -> str:
            return "yes" if v else "no"
        rows = [dict(asdict(d), words=", ".join(d.word_names) or "-",
                     where=d.words_in or "-", pse=yes(d.supports_pse),
                     mark=yes(d.supports_mark),
                     buggy="BUGGY" if d.buggy else "", doc=d.doc or d.file or d.module,
                     name=d.name + (" (default)" if d.default else ""))
                for d in self.designs]
        return [Table("Superpage refcount designs",
                      [Column("name", "design", align="<"), Column("where", "words in", align="<"),
                       Column("words", "words", align="<"), Column("pse", "PSE", align="<"),
                       Column("mark", "MARK", align="<"),
                       Column("buggy", "", align="<"), Column("doc", "docs", align="<"),
                       Column("description", "description", align="<")], rows)]


def catalog() -> Catalog:
    """The registered designs, in registration order."""
    return Catalog([DesignInfo.of(design_class(name)) for name in design_names()])


def metadata_rows(host: SuperpageHost) -> list[MetadataRow]:
    """Every registered design's overhead rows on ``host``'s machine: the designs' own rows
    in registration order, then the shared layouts, smallest first; a row named twice is
    given once (the first), and a row without a colour gets its design's."""
    rows: dict[str, MetadataRow] = {}
    for name, cls in REGISTRY.items():
        for row in cls(host).metadata_rows():
            if row.color is None:
                row.color = design_color(name)
            rows.setdefault(row.name, row)
    own = [r for r in rows.values() if not r.shared]
    return own + sorted((r for r in rows.values() if r.shared), key=lambda r: r.bytes)
