"""The superpage refcount designs: the interface Xen's page-table code calls
(get_superpage, put_superpage, mark/unmark), the registry, the counting core, one
module per design.
"""

# Imported in the order the designs were proposed (none, Xen 4.10's removal, last): their
# registration order, the order design_names() (config's choices and their error
# messages) lists them in.
from ._superpage import (
    SuperpageDesign, put_spage_pages, REGISTRY, register, design_names, make_design,
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

__all__ = [
    "COUNT_MASK", "CountedDesign", "MARK", "NoSuperpages", "PAGEINFO_COUNT_BYTES", "PageinfoCount",
    "PerMapping", "REGISTRY", "Sketch", "SuperpageDesign", "SuperpageInfo", "TableCounted",
    "Xen41", "design_names", "make_design", "put_spage_pages", "register",
]
