"""The repository is self-contained: nothing in it names a path outside it.

A user's clone has only this repository. Every test, example, config, benchmark,
scenario and document must therefore use files of the repository alone: no path
that climbs above the repository's root (a relative path with parent steps, a
``Path(__file__)`` walked up past the root), no absolute path into a build machine's
directories (the project's work area, home directories, temporary directories), no
home-relative path.

System paths a user's machine has by itself stay allowed: ``/proc/iomem`` (an input
format xensim reads), ``/proc/self/statm``, ``/dev/...``, ``/usr/bin/...``, the
shebang ``/usr/bin/env``, and the ``/boot/...`` of a recorded boot log.

The forbidden spellings are assembled from pieces below, so that this file is scanned
like every other and passes because it names no such path itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: what is scanned: these folders (every tracked file under them) and these files
SCANNED_DIRS = ("tests", "xensim", "examples", "docs", "configs", "benchmarks",
                "scenarios", ".ci")
SCANNED_FILES = ("README.md", "pyproject.toml")

DOT2 = "." * 2
SEP = "/"

#: absolute prefixes a user's machine has by itself
SYSTEM_PREFIXES = tuple(SEP + p + SEP for p in ("proc", "sys", "dev", "usr", "bin", "boot"))

#: an absolute path: a slash that starts a token (not inside a URL, a relative path,
#: a ratio like ``a/b`` or a regex), then a name and another slash or the end of a word
ABS_PATH = re.compile(r"(?<![\w.:/~\\\-\]\)\}$*+?%<>])" + SEP + r"(?!" + SEP
                      + r")[A-Za-z_][\w.\-]*(?:" + SEP + r"[\w.\-]*)*")
#: a relative path with one or more parent steps
PARENT_PATH = re.compile(r"(?:(?<=[^\w.])|^)((?:" + re.escape(DOT2 + SEP) + r")+[\w.\-/]*)",
                         re.MULTILINE)
#: a home-relative path, or a home directory asked for in code
HOME = re.compile(re.escape("~" + SEP) + "|" + re.escape("Path." + "home()") + "|"
                  + re.escape("$" + "HOME") + "|" + re.escape("%" + "USERPROFILE%"))
#: Windows drive paths
DRIVE = re.compile(r"\b[A-Za-z]:\\\\?[A-Za-z]")
#: ``Path(__file__)...parents[k]`` and ``.parent.parent...``
PARENTS_INDEX = re.compile(r"__file__\)[\w.()]*?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\)|\.absolute\(\))?((?:\.parent\b)+)")
#: a parent step written as a path component in code: "<dot><dot>" in quotes
DOTDOT_LITERAL = re.compile("[\"']" + re.escape(DOT2) + "[\"']")
#: the names of the work area's shared material, however they are joined
SHARED_NAMES = re.compile(r"[\"']shared[\"']\s*/|xen-mm-" + "reference|shared" + SEP + "memmaps"
                          + "|shared" + SEP + "docs")


def tracked_files() -> list[Path]:
    """The tracked files of the scanned folders and files (every file when not a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", *SCANNED_DIRS,
                              *SCANNED_FILES], capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:               # an unpacked archive: scan what is there
        for d in SCANNED_DIRS:
            for dirpath, dirnames, filenames in os.walk(ROOT / d):
                dirnames[:] = [x for x in dirnames if x != "__pycache__"]
                names += [str(Path(dirpath, f).relative_to(ROOT)) for f in filenames]
        names += [f for f in SCANNED_FILES if (ROOT / f).is_file()]
    return [ROOT / n for n in sorted(names)]


def _escapes(base: PurePosixPath, rel: str) -> bool:
    """Whether ``rel``, taken from folder ``base`` (relative to the root), leaves the root."""
    depth = len(base.parts)
    for part in PurePosixPath(rel).parts:
        if part == DOT2:
            depth -= 1
            if depth < 0:
                return True
        elif part not in (".", ""):
            depth += 1
    return False


def violations(relpath: str, text: str) -> list[str]:
    """Each place in ``text`` (the file ``relpath`` of the repository) naming a path outside
    the repository, as ``relpath:line: what``."""
    rel = PurePosixPath(relpath)
    folder = rel.parent if str(rel.parent) != "." else PurePosixPath()
    # a Markdown link or a shell script's path is relative to its file; anything else
    # (Python, YAML, C) to the working directory, which is the repository's root
    base = folder if rel.suffix in (".md", "") or rel.suffix == ".sh" else PurePosixPath()
    depth = len(folder.parts)          # folders between the root and this file
    found = []

    def hit(pos: int, what: str) -> None:
        line = text.count("\n", 0, pos) + 1
        found.append(f"{relpath}:{line}: {what}")

    for m in ABS_PATH.finditer(text):
        path = m.group(0)
        if not (path + SEP).startswith(SYSTEM_PREFIXES) and path != SEP:
            hit(m.start(), f"absolute path {path!r}")
    for m in PARENT_PATH.finditer(text):
        path = m.group(1)
        if base is not folder or _escapes(base, path):
            hit(m.start(1), f"path above the repository {path!r}")
        elif not (ROOT / base / path.rstrip(".")).exists():
            # inside the tree by its steps, but naming nothing there (a parent step
            # from a folder one level down that reaches for a sibling of the clone)
            hit(m.start(1), f"relative path to nothing in the repository {path!r}")
    for m in HOME.finditer(text):
        hit(m.start(), f"home path {m.group(0)!r}")
    for m in DRIVE.finditer(text):
        hit(m.start(), f"drive path {m.group(0)!r}")
    for m in PARENTS_INDEX.finditer(text):
        if int(m.group(1)) > depth:
            hit(m.start(), f"parents[{m.group(1)}] of a file {depth} folder(s) deep")
    for m in PARENT_CHAIN.finditer(text):
        n = m.group(1).count(".parent")
        if n > depth + 1:
            hit(m.start(), f"{n} x .parent of a file {depth} folder(s) deep")
    for m in DOTDOT_LITERAL.finditer(text):
        hit(m.start(), "a parent step as a path component")
    for m in SHARED_NAMES.finditer(text):
        hit(m.start(), f"the work area's shared material {m.group(0)!r}")
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:          # a binary file: nothing to read
        return None


def test_scan_covers_the_repository():
    """The scan reads the files it must: it cannot pass by reading nothing."""
    files = tracked_files()
    rels = {str(f.relative_to(ROOT)) for f in files}
    for d in ("tests", "xensim", "examples", "docs", "configs", "benchmarks", "scenarios"):
        assert any(r.startswith(d + SEP) for r in rels), d
    for f in ("README.md", "tests/test_self_contained.py", "tests/mem/test_pdx.py",
              "configs/machines/intel-gnr-4s.yaml", "docs/xen-facts.md",
              "docs/designs/xen-4.1.md", "xensim/mem/_pdx.py"):
        assert f in rels, f
    assert len(files) >= 100
    texts = [t for f in files if (t := _read(f)) is not None]
    assert len(texts) >= 100


def test_no_tracked_file_names_a_path_outside_the_repository():
    found = []
    for path in tracked_files():
        text = _read(path)
        if text is not None:
            found += violations(str(path.relative_to(ROOT)), text)
    assert found == []


# The scanner itself: each kind of violation is caught, the legitimate paths are not.

_SHARED_DOC = DOT2 + SEP + "shared" + SEP + "docs" + SEP + "notes.md"
_WORK = SEP + "work" + SEP + "main" + SEP + "x.yaml"


@pytest.mark.parametrize("relpath, text", [
    ("docs/tour.md", f"see `{_SHARED_DOC}`"),
    ("docs/tour.md", f"see [notes]({DOT2}{SEP}notes{SEP}x.md)"),
    ("docs/designs/a.md", f"[x]({DOT2}{SEP}{DOT2}{SEP}{DOT2}{SEP}elsewhere.md)"),
    ("tests/test_a.py", f'MAPS = Path("{DOT2}{SEP}maps")'),
    ("tests/test_a.py", 'MAPS = Path(__file__).resolve().parents' + '[2] / "maps"'),
    ("tests/test_a.py", 'MAPS = Path(__file__)' + '.parent' * 3 + ' / "maps"'),
    ("xensim/_a.py", 'P = Path(__file__).resolve().parents' + '[2]'),
    ("tests/test_a.py", f'MAPS = ROOT / "{DOT2}" / "maps"'),
    ("tests/test_a.py", f'MAPS = Path("{_WORK}")'),
    ("configs/a.yaml", f"machine: {{memory_map_file: {_WORK}}}"),
    ("README.md", f"run `cat {SEP}home{SEP}alice{SEP}maps.yaml`"),
    ("examples/a.py", f'open("{SEP}tmp{SEP}out.json")'),
    ("examples/a.py", f'open("~{SEP}maps.yaml")'),
    ("examples/a.py", "root = Path." + "home() / 'x'"),
    ("benchmarks/a.py", 'open("C:\\\\Users\\\\x")'),
    ("tests/test_a.py", 'X = ROOT.parent / "shared"' + ' / "maps"'),
    ("docs/a.md", "the facts in xen-mm-" + "reference.md"),
])
def test_scanner_flags_a_planted_violation(relpath, text):
    assert violations(relpath, "first line\n" + text + "\n") != []
    assert violations(relpath, "first line\n" + text + "\n")[0].startswith(relpath + ":2: ")


@pytest.mark.parametrize("relpath, text", [
    ("docs/designs/a.md", f"[facts]({DOT2}{SEP}xen-facts.md), [b]({DOT2}{SEP}{DOT2}{SEP}README.md)"),
    ("README.md", "a copy of `/proc/iomem` read as root"),
    ("benchmarks/a.py", "#!/usr/bin/env python3\nopen('/proc/self/statm')"),
    ("tests/test_a.py", 'HERE = Path(__file__).resolve().parent\nR = Path(__file__).parents[1]'),
    ("xensim/_a.py", 'ROOT = Path(__file__).resolve().parent.parent / "configs"'),
    ("docs/a.md", "https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/common/pdx.c"),
    ("docs/a.md", "xen/arch/x86/mm.c, docs/designs/xen-4.1.md, 8/4096 = 0.2%"),
    ("tests/test_a.py", "x = total // 2 / 3\nr = re.compile(r'(a|b)/c')"),
    ("tests/data/a.txt", "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1"),
    ("docs/a.md", "the workloads `shared` and `churn` (shared mappings)"),
])
def test_scanner_accepts_paths_inside_the_repository(relpath, text):
    assert violations(relpath, text) == []
