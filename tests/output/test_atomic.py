"""Results are written atomically (xensim/output/_results.py write_atomic): a Ctrl-C (KeyboardInterrupt)
at any point of the write leaves the previous results.json exactly as it was, and no
temporary file behind."""

from __future__ import annotations

import io
import os

import pytest

from xensim.cli import _main as _cli
from xensim.output._results import write_atomic

OLD = '{"results": "old"}\n'
NEW = '{"results": "new", "padding": "' + "x" * 100_000 + '"}\n'


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(OLD, encoding="utf-8")
    return path


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


class HalfWriter(io.TextIOWrapper):
    """A file whose write() writes half of the text, then is interrupted."""

    def write(self, text):
        super().write(text[:len(text) // 2])
        super().flush()
        raise KeyboardInterrupt


def half_fdopen(fd, mode="r", *args, **kwargs):
    return HalfWriter(io.FileIO(fd, "w"), encoding=kwargs.get("encoding", "utf-8"))


@pytest.mark.parametrize("where", ["write", "fsync", "chmod", "replace"])
def test_interrupt_keeps_the_old_results(results, monkeypatch, where):
    if where == "write":
        monkeypatch.setattr(os, "fdopen", half_fdopen)
    else:
        monkeypatch.setattr(os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(results, NEW)
    monkeypatch.undo()
    assert results.read_text(encoding="utf-8") == OLD
    assert os.listdir(results.parent) == ["results.json"]        # the temporary is gone


def test_uninterrupted_write_replaces(results):
    write_atomic(results, NEW)
    assert results.read_text(encoding="utf-8") == NEW
    assert os.listdir(results.parent) == ["results.json"]
    assert oct(results.stat().st_mode & 0o777) == oct(0o644)


def test_interrupted_xensim_run_out_keeps_the_previous_results(tmp_path, monkeypatch, capsys):
    """`xensim run --out DIR` twice; the second is interrupted while replacing results.json."""
    out = tmp_path / "out"
    assert _cli.main(["run", "--out", str(out)]) == 0
    before = (out / "results.json").read_bytes()
    files = sorted(os.listdir(out))
    real_replace = os.replace
    hit = []

    def interrupt_results(src, dst):
        if os.path.basename(dst) == "results.json":
            hit.append(dst)
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", interrupt_results)
    assert _cli.main(["run", "--out", str(out), "--pdx", "none"]) == 130   # 128 + SIGINT
    assert capsys.readouterr().err == "xensim: interrupted\n"          # one line, no traceback
    assert hit                                              # interrupted at results.json
    monkeypatch.undo()
    assert (out / "results.json").read_bytes() == before
    assert sorted(os.listdir(out)) == files
    capsys.readouterr()
