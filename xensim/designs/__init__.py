"""The superpage refcount designs: the interface Xen's page-table code calls
(get_superpage, put_superpage, mark/unmark), the registry, the counting core, one
module per design.
"""

# Imported in the order the designs were proposed (none, Xen 4.10's removal, last): their
# registration order, the order design_names() (config's choices and their error
# messages) lists them in.
from ._superpage import (
    SuperpageDesign, put_spage_pages, REGISTRY, register, design_names, make_design,
    MetadataRow, SuperpageStates, SPAGE_NONE, SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_STATE_NAMES,
    PALETTE, design_color, default_design, metadata_rows,
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
    Catalog, DesignInfo, catalog,
)

__all__ = [
    "COUNT_MASK", "Catalog", "CountedDesign", "DesignInfo", "MARK", "MetadataRow",
    "NoSuperpages", "PAGEINFO_COUNT_BYTES", "PALETTE", "PageinfoCount", "PerMapping", "REGISTRY",
    "SPAGE_DYNAMIC", "SPAGE_MARK", "SPAGE_NONE", "SPAGE_STATE_NAMES", "Sketch", "SuperpageDesign",
    "SuperpageInfo", "SuperpageStates", "TableCounted", "Xen41", "catalog", "default_design",
    "design_color", "design_names", "make_design", "metadata_rows", "put_spage_pages", "register",
]
