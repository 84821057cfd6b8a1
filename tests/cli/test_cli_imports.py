"""The subcommands import lazily: ``xensim presets``, ``overhead``, ``machine`` and
``--help`` load none of greenlet, matplotlib, the explorer, the fuzzer, the teaching
tools or the pictures; each subcommand module imports only light packages when loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: what a light subcommand must not load
HEAVY = ("greenlet", "matplotlib", "xensim.fuzz", "xensim.explore", "xensim.teach",
         "xensim.plot")

from xensim.cli._main import SUBCOMMANDS  # noqa: E402  (every subcommand's module)


def loaded(code: str) -> list[str]:
    """The modules loaded by ``code`` in a fresh interpreter (which prints nothing else
    after the marker line)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print('@@' + json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("@@")]
    assert line, out.stdout + out.stderr
    return json.loads(line[-1][2:])


def heavy(mods: list[str]) -> list[str]:
    return [m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("argv", [["presets"], ["overhead"], ["machine"], ["designs"], ["--help"]])
def test_light_commands_import_nothing_heavy(argv):
    code = ("from xensim.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            % (argv,))
    assert heavy(loaded(code)) == []


def test_import_xensim_is_light():
    assert heavy(loaded("import xensim")) == []


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_modules_import_light_packages_only(name):
    assert heavy(loaded(f"import xensim.cli._{name}")) == []


def test_the_check_sees_a_heavy_import():
    assert "xensim.explore" in heavy(loaded("import xensim.explore"))
    assert "greenlet" in heavy(loaded("import xensim.explore"))


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_protocol(name):
    """Each module registers its subcommand with a function of its own."""
    import argparse
    import importlib
    mod = importlib.import_module(f"xensim.cli._{name}")
    sub = argparse.ArgumentParser().add_subparsers()
    assert mod.add_parser(sub) is None
    assert list(sub.choices) == [name]
    func = sub.choices[name].get_default("func")
    assert callable(func)
