"""The superpage refcount designs: the interface Xen's page-table code calls
(get_superpage, put_superpage, mark/unmark), the registry, the counting core, one
module per design, and loading a user's designs (files, installed packages).
"""

# Imported in the order the designs were proposed: their registration order, the order
# design_names() (config's choices and their error messages) lists them in.
from ._superpage import (
    SuperpageDesign, put_spage_pages, REGISTRY, REQUIRED_METHODS, check_design, register,
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

__all__ = [
    "COUNT_MASK", "CountedDesign", "ENTRY_POINT_GROUP", "MARK", "PAGEINFO_COUNT_BYTES",
    "PageinfoCount", "PerMapping", "REGISTRY", "REQUIRED_METHODS", "Sketch", "SuperpageDesign",
    "SuperpageInfo", "TableCounted", "Xen41", "check_design", "design_class", "design_file_of",
    "design_names", "load_design_file", "load_design_files", "load_entry_points",
    "make_design", "put_spage_pages", "register",
]
