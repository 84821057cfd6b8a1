"""The package structure, checked by reading every module with ``ast``.

* Layers: a package imports only packages below it (function-level imports count).
* No import cycle between modules, inside a package too.
* No private cross-import: from another package only names of its ``__all__``,
  through the package; no underscore-named object from another module (Xen's
  ``_PAGE_*`` flags excepted).
* No attribute access to another module's private names: ``x._name`` where ``_name`` is
  not defined in the module itself (ARCHITECTURE "Layers and rules" says precisely).
* No module over 700 lines; every module says in a docstring what it owns.
* Every subpackage has an ``__init__`` whose ``__all__`` names exist.
* examples/ and benchmarks/ import only public names.
* Library packages (everything but cli) import no argparse; a cli module imports only
  light packages at module level (the rest inside its functions).

Each checker is a function of a tree of sources, so the tests at the end plant small
violations and see each one caught.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = "xensim"

#: the layers, bottom first: a package may import the packages of lower rows only
#: (packages of one row do not import each other). ``xensim`` is the top-level
#: public face (``xensim/__init__.py``), which only the CLI imports.
LAYERS = (
    ("_errors", "_entry"),
    ("mem", "output"),
    ("engines",),
    ("designs",),
    ("xen",),
    ("config",),
    ("guest",),
    ("sim",),
    ("explore", "fuzz", "teach", "sweep"),
    ("plot", "pages"),
    ("xensim",),
    ("cli",),
)
RANK = {pkg: i for i, row in enumerate(LAYERS) for pkg in row}

MAX_LINES = 700

#: the packages that may parse a command line
CLI_PACKAGES = ("cli",)

#: what a cli module may import at module level (anything heavier inside its functions);
#: ``xensim`` itself is loaded before any of its modules anyway
LIGHT = ("_errors", "mem", "config", "designs", "output", "cli", "xensim")


@dataclass
class Module:
    name: str               # dotted: xensim.mem._units, xensim.mem (an __init__), xensim
    source: str
    is_package: bool = False
    tree: ast.Module = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ast.parse(self.source, self.name)


@dataclass(frozen=True)
class Import:
    importer: str           # the importing module
    target: str             # the module imported (a package means its __init__)
    name: str | None        # the name taken from it (None: the module itself)
    line: int

    def __str__(self) -> str:
        what = f"from {self.target} import {self.name}" if self.name else f"import {self.target}"
        return f"{self.importer}:{self.line}: {what}"


def load_tree(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the xensim package, by dotted name."""
    mods = {}
    for path in sorted((root / PKG).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        mods[".".join(parts)] = Module(".".join(parts), path.read_text(encoding="utf-8"), is_pkg)
    return mods


def package_of(name: str) -> str:
    """The layer-table package of a module: ``xensim.plot._sweep`` -> ``plot``."""
    if name == PKG:
        return PKG
    rest = name[len(PKG) + 1:]
    if rest == "__main__":                        # python -m xensim: the command line
        return "cli"
    best = ""
    for pkg in RANK:
        if (rest == pkg or rest.startswith(pkg + ".")) and len(pkg) > len(best):
            best = pkg
    return best or rest.split(".")[0]


def _is_module(mods: dict[str, Module], name: str) -> bool:
    return name in mods


def imports(mods: dict[str, Module], mod: Module) -> list[Import]:
    """Every import of xensim modules in ``mod``, at any depth (functions too)."""
    found = []
    here = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PKG or a.name.startswith(PKG + "."):
                    found.append(Import(mod.name, a.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == PKG or target.startswith(PKG + ".")):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if _is_module(mods, sub):           # from . import _mod: the module itself
                    found.append(Import(mod.name, sub, None, node.lineno))
                else:
                    found.append(Import(mod.name, target, a.name, node.lineno))
    return found


def all_imports(mods: dict[str, Module]) -> list[Import]:
    return [imp for m in mods.values() for imp in imports(mods, m)]


def declared_all(mod: Module) -> list[str] | None:
    """The names of a module's literal ``__all__``, None without one."""
    for node in mod.tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]
    return None


def bound_names(mod: Module) -> set[str]:
    """The names a module binds at its top level (imports, definitions, assignments)."""
    names = set()
    for node in mod.tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _private(name: str) -> bool:
    """An underscore-named object (dunders and Xen's _PAGE_* flags are public)."""
    return (name.startswith("_") and not name.startswith("_PAGE_")
            and not (name.startswith("__") and name.endswith("__")))


# --------------------------------------------------------------------------
# The checkers: each returns the offending places, one line each

def layer_violations(mods: dict[str, Module]) -> list[str]:
    bad = []
    for imp in all_imports(mods):
        src, dst = package_of(imp.importer), package_of(imp.target)
        if src == dst:
            continue
        if src not in RANK or dst not in RANK:
            bad.append(f"{imp}  (package {src if src not in RANK else dst} not in LAYERS)")
        elif RANK[dst] >= RANK[src]:
            bad.append(f"{imp}  ({src} may not import {dst})")
    return sorted(set(bad))


def cycles(mods: dict[str, Module]) -> list[list[str]]:
    """The import cycles between modules (strongly connected components, Tarjan)."""
    graph: dict[str, set[str]] = {n: set() for n in mods}
    for imp in all_imports(mods):
        if imp.target in mods and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def private_violations(mods: dict[str, Module]) -> list[str]:
    bad = []
    for imp in all_imports(mods):
        src, dst = package_of(imp.importer), package_of(imp.target)
        if src != dst:
            # through the package: the target is the package itself (or _errors)
            head = PKG if dst == PKG else f"{PKG}.{dst}"
            if imp.target != head:
                bad.append(f"{imp}  (private module: import from {head})")
                continue
            if imp.name is None or (imp.name.startswith("__") and imp.name.endswith("__")):
                continue
            names = declared_all(mods[imp.target]) if imp.target in mods else None
            if names is None or imp.name not in names:
                bad.append(f"{imp}  ({imp.name} is not in {imp.target}.__all__)")
                continue
        if imp.name is not None and _private(imp.name):
            bad.append(f"{imp}  (an underscore-named object)")
    return sorted(set(bad))


def defined_privates(mod: Module) -> set[str]:
    """The underscore names a module defines: its functions, classes and methods, the
    names it assigns (module level, class bodies, locals) and the attributes it assigns
    on ``self`` or ``cls``."""
    names = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del))
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def private_attributes(mods: dict[str, Module]) -> list[tuple[str, str, int]]:
    """Every access ``x._name`` (read, write or delete) to a private name of another module:
    (module, name, line). Allowed: ``_name`` defined in the module itself (see
    :func:`defined_privates`), reached through ``self`` / ``cls`` or a plain variable (the
    module's own class's private, ``other._runs`` in ``__eq__``). Any other receiver (an
    attribute, ``self.frame_table._valid``; a call; a subscript) is another object: its
    private names are not the module's."""
    bad = []
    for m in mods.values():
        own = defined_privates(m)
        for node in ast.walk(m.tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.attr in own:
                continue
            bad.append((m.name, node.attr, node.lineno))
    return sorted(bad)


#: Private names read across modules that are tolerated, as (module, name): none. A pair
#: added here must still occur (the test fails when one goes), so the list only shrinks.
PRIVATE_ATTRIBUTES_ALLOWED: set[tuple[str, str]] = set()


def long_modules(mods: dict[str, Module], limit: int = MAX_LINES) -> list[str]:
    return sorted(f"{m.name}: {n} lines" for m in mods.values()
                  if (n := len(m.source.splitlines())) > limit)


def undocumented_modules(mods: dict[str, Module]) -> list[str]:
    return sorted(m.name for m in mods.values() if not (ast.get_docstring(m.tree) or "").strip())


def package_violations(mods: dict[str, Module], packages: set[str]) -> list[str]:
    """Each subpackage (a folder of modules) has an __init__ with an __all__ of existing names."""
    bad = []
    for pkg in sorted(packages):
        if pkg not in mods or not mods[pkg].is_package:
            bad.append(f"{pkg}: no __init__.py")
            continue
        names = declared_all(mods[pkg])
        if names is None:
            bad.append(f"{pkg}: no __all__")
            continue
        bound = bound_names(mods[pkg])
        bad += [f"{pkg}: __all__ names {n!r}, which it does not define" for n in names
                if n not in bound]
        bad += [f"{pkg}: __all__ names {n!r} twice" for n in sorted(set(names))
                if names.count(n) > 1]
    return bad


def argparse_violations(mods: dict[str, Module]) -> list[str]:
    bad = []
    for m in mods.values():
        if package_of(m.name) in CLI_PACKAGES:
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse"
                                                    for a in node.names):
                bad.append(f"{m.name}:{node.lineno}: import argparse")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse" \
                    and not node.level:
                bad.append(f"{m.name}:{node.lineno}: from argparse import ...")
    return sorted(bad)


def heavy_cli_imports(mods: dict[str, Module]) -> list[str]:
    """Module-level imports of a cli module from a package that is not light."""
    bad = []
    for m in mods.values():
        if package_of(m.name) not in CLI_PACKAGES:
            continue
        top = Module(m.name, m.source, m.is_package)
        top.tree.body = [n for n in top.tree.body
                         if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        bad += [f"{imp}  ({package_of(imp.target)} is not light: import it in the function)"
                for imp in imports(mods, top) if package_of(imp.target) not in LIGHT]
    return sorted(bad)


def user_violations(mods: dict[str, Module], relpath: str, source: str) -> list[str]:
    """An example or a benchmark imports only public names: no underscore module, only
    names of the imported module's ``__all__``."""
    bad = []
    for node in ast.walk(ast.parse(source, relpath)):
        if isinstance(node, ast.Import):
            pairs = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            pairs = [(node.module or "", a.name) for a in node.names]
        else:
            continue
        for target, name in pairs:
            if not (target == PKG or target.startswith(PKG + ".")):
                continue
            where = f"{relpath}:{node.lineno}: " + (f"from {target} import {name}" if name
                                                   else f"import {target}")
            if any(_private(p) for p in target.split(".")):
                bad.append(f"{where}  (a private module)")
                continue
            if name is None or (name.startswith("__") and name.endswith("__")):
                continue
            if _private(name):
                bad.append(f"{where}  (an underscore-named object)")
                continue
            names = declared_all(mods[target]) if target in mods else None
            if names is None or name not in names:
                bad.append(f"{where}  ({name} is not in {target}.__all__)")
    return bad


def subpackages(root: Path = ROOT) -> set[str]:
    """Every folder of the package holding a module (as a dotted name)."""
    return {".".join(p.parent.relative_to(root).parts) for p in (root / PKG).rglob("*.py")}


def user_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for d in ("examples", "benchmarks") for p in (root / d).rglob("*.py"))


# --------------------------------------------------------------------------
# The rules, on the real tree

@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return load_tree()


def test_the_tree_is_read(tree):
    """The checks cannot pass by reading nothing."""
    assert len(tree) >= 50
    for name in ("xensim", "xensim._errors", "xensim.mem", "xensim.mem._units", "xensim.cli._main",
                 "xensim.plot"):
        assert name in tree, name
    assert len(all_imports(tree)) >= 200
    assert {package_of(n) for n in tree} <= set(RANK), {package_of(n) for n in tree} - set(RANK)
    assert len(user_files()) >= 8


def test_layers(tree):
    assert layer_violations(tree) == []


def test_no_import_cycles(tree):
    assert cycles(tree) == []


def test_no_private_cross_imports(tree):
    assert private_violations(tree) == []


def against_allowed(found: list[tuple[str, str, int]], allowed: set[tuple[str, str]]):
    """(the accesses ``allowed`` does not list, the pairs of ``allowed`` no longer found)."""
    return ([f"{m}:{line}: .{name}" for m, name, line in found if (m, name) not in allowed],
            sorted(allowed - {(m, name) for m, name, _ in found}))


def test_no_private_attributes_of_other_modules(tree):
    unlisted, stale = against_allowed(private_attributes(tree), PRIVATE_ATTRIBUTES_ALLOWED)
    assert unlisted == []
    assert stale == [], "fixed: take these out of PRIVATE_ATTRIBUTES_ALLOWED"


def test_the_allowed_list_cannot_go_stale():
    found = [("xensim.xen._mmu", "_get_page_and_type", 3), ("xensim.xen._a", "_b", 7)]
    allowed = {("xensim.xen._mmu", "_get_page_and_type"), ("xensim.xen._refcount", "_log")}
    assert against_allowed(found, allowed) == (["xensim.xen._a:7: ._b"],
                                               [("xensim.xen._refcount", "_log")])


def test_modules_at_most_700_lines(tree):
    assert long_modules(tree) == []


def test_every_module_says_what_it_owns(tree):
    assert undocumented_modules(tree) == []


def test_every_subpackage_has_an_init_with_all(tree):
    pkgs = subpackages()
    assert {"xensim", "xensim.mem", "xensim.cli", "xensim.plot"} <= pkgs
    assert package_violations(tree, pkgs) == []


def test_examples_and_benchmarks_import_public_names(tree):
    found = []
    for path in user_files():
        found += user_violations(tree, str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    assert found == []


def test_library_packages_have_no_argparse(tree):
    assert argparse_violations(tree) == []


def test_cli_modules_import_light_packages_at_module_level(tree):
    assert heavy_cli_imports(tree) == []


#: design names that are also ordinary words used as values elsewhere (a PDX mode, a
#: scenario's end): not looked for
COMMON_WORDS = {"none"}


def design_mentions(mods: dict[str, Module], names, classes) -> list[str]:
    """Outside xensim.designs (and the top-level re-export): a string equal to a design's
    name, or a reference to a design's class: knowledge that belongs to the design."""
    bad = []
    for m in mods.values():
        if package_of(m.name) == "designs" or m.name == PKG:
            continue
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in names and node.value not in COMMON_WORDS):
                bad.append(f"{m.name}:{node.lineno}: names design {node.value!r}")
            elif isinstance(node, ast.Name) and node.id in classes:
                bad.append(f"{m.name}:{node.lineno}: uses design class {node.id}")
            elif isinstance(node, ast.alias) and node.name in classes:
                bad.append(f"{m.name}:{node.lineno}: imports design class {node.name}")
    return sorted(set(bad))


def test_no_module_outside_designs_names_a_design(tree):
    from xensim.designs import REGISTRY, SuperpageDesign
    import xensim.designs as designs
    classes = {n for n in dir(designs) if isinstance(getattr(designs, n), type)
               and issubclass(getattr(designs, n), SuperpageDesign)}
    assert design_mentions(tree, set(REGISTRY), classes) == []


def test_design_mention_checker_flags():
    mods = planted(**{**BASE, "xen___machine": "x = 'xen-4.1'\nfrom ..designs import Xen41\n"})
    assert design_mentions(mods, {"xen-4.1"}, {"Xen41"}) == [
        "xensim.xen._machine:2: names design 'xen-4.1'",
        "xensim.xen._machine:3: imports design class Xen41"]
    clean = planted(**{**BASE, "xen___machine": '"""About xen-4.1."""\nmode = "none"\n'})
    assert design_mentions(clean, {"xen-4.1", "none"}, {"Xen41"}) == []


# --------------------------------------------------------------------------
# The checkers themselves, on planted trees

def planted(**sources: str) -> dict[str, Module]:
    """A tree from ``mem___units="..."`` style keywords: ``__`` separates parts, ``init``
    names a package's ``__init__``."""
    mods = {}
    for key, src in sources.items():
        parts = [PKG] + [p for p in key.split("__") if p]
        is_pkg = parts[-1] == "init"
        if is_pkg:
            parts.pop()
        name = ".".join(parts)
        mods[name] = Module(name, '"""doc."""\n' + src, is_pkg)
    return mods


BASE = dict(init="", _errors="__all__ = ['ConfigError']\nclass ConfigError(Exception): pass\n",
            mem__init="from ._units import KiB\n__all__ = ['KiB']\n",
            mem___units="KiB = 1024\n_hidden = 1\n",
            xen__init="from ._machine import Machine\n__all__ = ['Machine']\n",
            xen___machine="from ..mem import KiB\nclass Machine: pass\n",
            cli__init="__all__ = []\n", cli___main="from ..xen import Machine\n")


def test_planted_clean_tree_passes():
    mods = planted(**BASE)
    assert layer_violations(mods) == [] and cycles(mods) == [] and private_violations(mods) == []
    assert argparse_violations(mods) == [] and undocumented_modules(mods) == []
    assert package_violations(mods, {"xensim.mem", "xensim.xen", "xensim.cli"}) == []


@pytest.mark.parametrize("module, src", [
    ("mem___units", "from ..xen import Machine\n"),                   # upwards, module level
    ("mem___units", "def f():\n    from ..xen import Machine\n"),     # upwards, in a function
    ("xen___machine", "import xensim.cli._main\n"),                   # absolute
    ("mem__init", "from ..output import render\n"),                   # one row: mem, output
    ("explore___x", "def f():\n    from ..fuzz import campaign\n"),   # explore, fuzz, teach
    ("xen___machine", "from .. import Machine\n"),                    # the public face
    ("newpkg___x", "from ..mem import KiB\n"),                        # a package not in LAYERS
])
def test_layer_checker_flags(module, src):
    mods = planted(**{**BASE, module: BASE.get(module, "") + src})
    assert layer_violations(mods) != []


def test_layer_checker_allows_downwards():
    mods = planted(**{**BASE, "output__init": "", "plot__init": "",
                      "plot___sweep": "def f():\n    from .. import output\n"
                                      "from ..output import render\nfrom ..sim import run\n"})
    assert layer_violations(mods) == []


@pytest.mark.parametrize("extra", [
    dict(mem___a="from ._b import x\n", mem___b="def f():\n    from ._a import y\n"),
    dict(mem___a="from . import _b\n", mem___b="from . import _c\n", mem___c="import xensim.mem._a\n"),
    dict(mem___units="KiB = 1\nfrom . import KiB as K\n"),            # the module and its package
])
def test_cycle_checker_flags(extra):
    assert cycles(planted(**{**BASE, **extra})) != []


@pytest.mark.parametrize("module, src", [
    ("xen___machine", "from ..mem._units import KiB\n"),              # a private module
    ("xen___machine", "import xensim.mem._units\n"),
    ("xen___machine", "from ..mem import _units\n"),                  # a private submodule
    ("xen___machine", "from ..mem import MiB\n"),                     # not in __all__
    ("cli___main", "from ..xen import _setup\n"),                     # underscore object
    ("xen___other", "from ._machine import _resolve\n"),              # inside a package too
    ("cli___main", "from .._errors import _Hidden\n"),
])
def test_private_checker_flags(module, src):
    mods = planted(**{**BASE, module: BASE.get(module, "") + src})
    assert private_violations(mods) != []


def test_private_checker_allows_page_flags_and_own_modules():
    mods = planted(**{**BASE, "xen__init": "from ._pt import _PAGE_RW\n__all__ = ['_PAGE_RW']\n",
                      "xen___pt": "_PAGE_RW = 2\n", "xen___machine": "from ._pt import _PAGE_RW\n",
                      "cli___main": "from ..xen import _PAGE_RW\nfrom .._errors import ConfigError\n"
                                    "from . import _run\nfrom .. import __version__\n",
                      "cli___run": ""})
    assert private_violations(mods) == []


@pytest.mark.parametrize("src, name", [
    ("def f(pdx):\n    return pdx._to_pdx(1)\n", "_to_pdx"),           # another's method
    ("class Box:\n    def f(self):\n        return self.ft._valid\n", "_valid"),    # a component's
    ("class Box:\n    def f(self):\n        self.ft._journal = None\n", "_journal"),  # written
    ("class Box(Base):\n    def f(self):\n        return self._inherited\n", "_inherited"),  # a base's
    ("import os\nos._exit(0)\n", "_exit"),                           # another package's
    ("class Box:\n    def f(self):\n        self._x = 1\n"
     "def g(a):\n    return a.b._x\n", "_x"),                           # own name, not own object
])
def test_private_attribute_checker_flags(src, name):
    mods = planted(**{**BASE, "xen___machine": src})
    assert [(m, n) for m, n, _ in private_attributes(mods)] == [("xensim.xen._machine", name)]


def test_private_attribute_checker_allows_a_modules_own_names():
    src = ("_cache = {}\nclass Box:\n    _slot = 1\n    def __init__(self):\n        self._x = 1\n"
           "    def _f(self):\n        return self._x + self._slot + _cache.get(1, 0)\n"
           "    def __eq__(self, other):\n        return self._x == other._x and self.__dict__\n"
           "def g(a):\n    return a._f()\n")
    assert private_attributes(planted(**{**BASE, "xen___machine": src})) == []


def test_long_module_checker():
    mods = planted(**{**BASE, "mem___big": "x = 1\n" * 700})
    assert long_modules(mods) == ["xensim.mem._big: 701 lines"]
    assert long_modules(planted(**{**BASE, "mem___big": "x = 1\n" * 699})) == []


def test_docstring_checker():
    mods = planted(**BASE)
    mods["xensim.mem._bare"] = Module("xensim.mem._bare", "x = 1\n")
    assert undocumented_modules(mods) == ["xensim.mem._bare"]


@pytest.mark.parametrize("init", [
    None,                                                            # no __init__
    "from ._units import KiB\n",                                     # no __all__
    "from ._units import KiB\n__all__ = ['KiB', 'MiB']\n",           # a name it lacks
    "from ._units import KiB\n__all__ = ['KiB', 'KiB']\n",
])
def test_package_checker_flags(init):
    src = dict(BASE)
    if init is None:
        del src["mem__init"]
    else:
        src["mem__init"] = init
    assert package_violations(planted(**src), {"xensim.mem"}) != []


@pytest.mark.parametrize("src", [
    "import argparse\n", "def f():\n    from argparse import ArgumentParser\n",
    "import argparse as ap\n",
])
def test_argparse_checker(src):
    assert argparse_violations(planted(**{**BASE, "mem___units": src})) != []
    assert argparse_violations(planted(**{**BASE, "cli___main": src})) == []


def test_heavy_cli_import_checker():
    assert heavy_cli_imports(planted(**BASE)) == ["xensim.cli._main:2: from xensim.xen import "
                                                  "Machine  (xen is not light: import it in the "
                                                  "function)"]
    lazy = "def cmd(args):\n    from ..xen import Machine\nfrom ..mem import KiB\n"
    assert heavy_cli_imports(planted(**{**BASE, "cli___main": lazy})) == []


@pytest.mark.parametrize("src", [
    "from xensim.mem._units import KiB\n", "import xensim.mem._units\n",
    "from xensim.mem import _hidden\n", "from xensim.mem import MiB\n",
    "def f():\n    from xensim.xen._machine import Machine\n",
])
def test_user_checker_flags(src):
    assert user_violations(planted(**BASE), "examples/x.py", src) != []


def test_user_checker_allows_public_names():
    src = "import xensim\nfrom xensim.mem import KiB\nfrom xensim import __version__\nimport numpy\n"
    assert user_violations(planted(**BASE), "examples/x.py", src) == []
