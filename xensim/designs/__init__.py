"""The superpage refcount designs: the port a design is given (the host), the interface
Xen's page-table code calls (get_superpage, put_superpage, mark/unmark, the hooks), the
registry, the palette, the counting core, one module per design, and loading a user's
designs (files, installed packages).
"""

# Imported in the order the designs were proposed (none, Xen 4.10's removal, last): their
# registration order, the order design_names() (config's choices and their error
# messages) lists them in.
from ._host import (
    Expectation, SuperpageHost,
)
from ._superpage import (
    SuperpageDesign, MetadataRow, PseEntries, SuperpageStates, SPAGE_NONE, SPAGE_DYNAMIC,
    SPAGE_MARK, SPAGE_STATE_NAMES, sparse_table_row,
)
from ._registry import (
    REGISTRY, REQUIRED_METHODS, check_design, register, default_design,
)
from ._palette import (
    PALETTE, design_color,
)
from ._loading import (
    ENTRY_POINT_GROUP, load_design_file, load_design_files, load_entry_points, design_names,
    design_class, make_design, design_file_of,
)
from ._counted import (
    MARK, COUNT_MASK, CountedDesign, TableCounted,
)
from ._per_mapping import (
    PerMapping,
)
from ._pageinfo_count import (
    PAGEINFO_COUNT_BYTES, PageinfoCount,
)
from ._superpage_info import (
    SuperpageInfo,
)
from ._xen41 import (
    Xen41,
)
from ._sketch import (
    Sketch,
)
from ._none import (
    NoSuperpages,
)
from ._catalog import (
    Catalog, DesignInfo, catalog, metadata_rows,
)

__all__ = [
    "COUNT_MASK", "Catalog", "CountedDesign", "DesignInfo", "ENTRY_POINT_GROUP", "Expectation",
    "MARK", "MetadataRow", "NoSuperpages", "PAGEINFO_COUNT_BYTES", "PALETTE", "PageinfoCount",
    "PerMapping", "PseEntries", "REGISTRY", "REQUIRED_METHODS", "SPAGE_DYNAMIC", "SPAGE_MARK",
    "SPAGE_NONE", "SPAGE_STATE_NAMES", "Sketch", "SuperpageDesign", "SuperpageHost",
    "SuperpageInfo", "SuperpageStates", "TableCounted", "Xen41", "catalog", "check_design",
    "default_design", "design_class", "design_color", "design_file_of", "design_names",
    "load_design_file", "load_design_files", "load_entry_points", "make_design",
    "metadata_rows", "register", "sparse_table_row",
]
