"""One self-contained page: the HTML shell every step-through page shares.

The page is one file with no external resource (it works from ``file://`` with no
network): its style (``page.css``) and its script (hand-written, in this package's
``*.js`` files) are inline, and its data is one JSON document in a
``<script type="application/json" id="data">`` element, which the script reads. The
file is written atomically (:func:`~xensim.output.write_atomic`).

The scripts answer a URL fragment, so a headless browser can drive a page without
a click: ``#step=N`` opens step N (1-based), ``&keys=nnp`` then presses those keys
(the page's own shortcuts), ``&follow=0x200`` follows a frame (``&superpage=0x200``: a
superpage). Once drawn, the page writes what it shows into ``<body>``'s ``data-*``
attributes (``data-ready``, ``data-step``, ``data-steps``, ``data-scroll-width``).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from ..output import write_atomic


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("xensim")
    except PackageNotFoundError:            # run from a source tree that is not installed
        return "(not installed)"


def esc(text) -> str:
    """Text as HTML (quotes too)."""
    return html.escape(str(text), quote=True)


def asset(name: str) -> str:
    """A file of this package (``page.css``, ``trace.js`` ...) as text."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def data_json(data) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def page(title: str, meta: str, body: str, data, scripts: tuple[str, ...]) -> str:
    """The page: ``title`` (text), ``meta`` (HTML, the line under the title), ``body``
    (HTML), ``data`` (the JSON the ``scripts``, this package's files, read)."""
    js = "\n".join(asset(s) for s in scripts)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{asset('page.css')}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="meta">{meta}; xensim {esc(_version())}</p></header>',
        body,
        f'<script type="application/json" id="data">{data_json(data)}</script>',
        f"<script>{js}</script>",
        "</body></html>",
        "",
    ])


def write_page(path, text: str) -> Path:
    """Write a page at ``path`` (its directory was checked before the run), atomically."""
    path = Path(path)
    write_atomic(path, text)
    return path
