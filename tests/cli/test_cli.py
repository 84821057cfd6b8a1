"""The command line: xensim.cli._main.main(argv), in-process with capsys.

One subprocess run (`python -m xensim run`) proves the module entry point.
Expected figures are those of tests/sim/test_overhead.py, worked out there by hand;
the teaching machine's are repeated here where an output line is checked.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import xensim
from xensim import Machine, build_memory_map, load_config, load_preset
from xensim.cli._main import build_parser, main

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parent
BAD = HERE / "bad_configs"
DMESG = HERE / "data" / "qemu-pc-4g-dmesg.txt"
IOMEM = HERE / "data" / "qemu-pc-4g-iomem.txt"

PRESETS = ["firecracker-1g", "intel-clx-2s", "intel-gnr-4s", "qemu-2node", "qemu-pc-4g",
           "teaching"]
OVERHEAD_KEYS = ["machine", "ram_bytes", "ram_frames", "max_pfn", "max_pdx", "pdx",
                 "pdx_groups_with_ram", "superpages_with_ram", "superpages_full", "designs"]
DESIGN_KEYS = {"name", "bytes", "percent_of_ram", "unit", "description", "entry_bytes"}


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def lines_split(text):
    """Each output line as its whitespace-separated words (column widths are free)."""
    return [line.split() for line in text.splitlines()]


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

def test_run_default_prints_overhead_and_machine(capsys):
    rc, out, err = run(capsys, "run")
    assert rc == 0
    assert err == ""
    words = lines_split(out)
    # the default config compares the designs (tests/cli/test_cli_run.py): that table comes first
    assert out.startswith("Comparison on teaching: ")
    assert "\nRefcount metadata on teaching: 3.00 GiB of RAM\n" in out
    # teaching: 12 groups * 65,536 frames * 8 B = 6,291,456 B = 6.00 MiB; 6,291,456 * 100 /
    # 3,220,831,232 = 0.19534 %
    assert ["pageinfo-count", "8", "B/frame", "6,291,456", "6.00", "MiB", "0.19534%"] in words
    # 3 chunks * 4096 B = 12,288 B; 12,288 * 100 / 3,220,831,232 = 0.00038 %
    assert ["sparse-8B", "8", "B/2", "MiB", "with", "RAM", "12,288", "12.00", "KiB",
            "0.00038%"] in words
    assert ["per-mapping", "none", "0", "0", "B", "0.00000%"] in words
    assert "  pageinfo-count / sparse-8B = 512x" in out.splitlines()
    # the machine summary follows
    assert "\nMachine as booted, before any domain (each design above ran on a fresh copy of it)\n" in out
    assert ["max_pfn", "0x140000"] in words
    assert ["max_pdx", "0xc0000"] in words
    assert ["RAM", "3,220,831,232", "B", "(3.00", "GiB),", "786,335", "whole", "frames"] in words
    # the bitmap only so far; all 12 groups' arrays: 12 * 65,536 * 18 B = 14,155,776 B
    assert ("frame table allocated      12 B at boot (a group's arrays are created on its "
            "first write; all 12: 13.50 MiB)") in out.splitlines()
    assert ["superpage", "table", "allocated", "12,288", "B"] in words


def test_run_json(capsys):
    rc, out, _ = run(capsys, "run", "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert list(d) == ["machine", "overhead", "comparison"]
    ov = d["overhead"]
    assert list(ov) == OVERHEAD_KEYS
    assert all(set(row) == DESIGN_KEYS for row in ov["designs"])
    assert [row["name"] for row in ov["designs"]] == [
        "xen-frame-table", "xensim-frame-table", "per-mapping", "pageinfo-count",
        "xen-4.1-dense", "xen-4.1-dense-pdx", "none", "sparse-8B", "sparse-16B"]
    assert ov["machine"] == "teaching"
    assert ov["ram_bytes"] == 3220831232
    assert ov["max_pdx"] == 0xc0000
    mach = d["machine"]
    assert mach["name"] == "teaching"
    # every range of configs/machines/teaching.yaml, sorted, with its type
    assert mach["memory_map"] == [
        ["0x0", "0x9fc00", "ram"], ["0x9fc00", "0xa0000", "reserved"],
        ["0xf0000", "0x100000", "reserved"], ["0x100000", "0x80000000", "ram"],
        ["0xfec00000", "0xfee01000", "reserved"], ["0x100000000", "0x140000000", "ram"]]
    # frame holes below max_pfn, as byte addresses: [0x9f000, 1 MiB) and [2 GiB, 4 GiB)
    assert mach["holes"] == [["0x9f000", "0x100000"], ["0x80000000", "0x100000000"]]
    assert mach["pdx_groups_with_ram"] == 12


def test_run_csv(capsys):
    # `run` writes the comparison's rows (tests/cli/test_cli_run.py); the overhead's are these
    rc, out, _ = run(capsys, "overhead", "--format", "csv")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("name,")
    assert lines[0] == "name,unit,bytes,human,percent_of_ram"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 9
    assert rows[3]["name"] == "pageinfo-count"
    assert rows[3]["bytes"] == "6291456"
    # 0.19533640690...: 10 significant digits, no float noise
    assert rows[3]["percent_of_ram"] == "0.1953364069"


def test_run_md(capsys):
    rc, out, _ = run(capsys, "run", "--format", "md")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("### Comparison on teaching: ")
    assert "### Refcount metadata on teaching: 3.00 GiB of RAM" in lines
    assert "| design | cost | bytes | size | % of RAM |" in lines
    assert "| sparse-8B | 8 B/2 MiB with RAM | 12,288 | 12.00 KiB | 0.00038% |" in lines
    assert "### Machine as booted, before any domain (each design above ran on a fresh copy of it)" in lines
    assert sum(1 for line in lines if line.startswith("|")) >= 10


def test_run_out_writes_config_and_results(capsys, tmp_path):
    out_dir = tmp_path / "out"
    rc, out, _ = run(capsys, "run", "--out", str(out_dir))
    assert rc == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.yaml", "results.csv",
                                                         "results.json"]
    assert out.rstrip().endswith(f"wrote {out_dir / 'config.yaml'}, "
                                 f"{out_dir / 'results.json'} and {out_dir / 'results.csv'}")
    results = json.loads((out_dir / "results.json").read_text())
    assert list(results) == ["machine", "overhead", "comparison"]
    assert results["overhead"]["ram_bytes"] == 3220831232
    # the resolved config loads back to the same machine
    cfg = load_config(out_dir / "config.yaml")
    mm = build_memory_map(cfg)
    teaching = load_preset("teaching")
    assert mm == teaching                                   # every range and type
    assert mm.frame_ranges == [(0x0, 0x9f), (0x100, 0x80000), (0x100000, 0x140000)]
    assert mm.name == "teaching"
    assert cfg.machine.pdx == "mask"
    m = Machine(mm, cfg.machine.pdx)
    assert m.pdx.max_pdx == 0xc0000
    assert xensim.overhead(m).to_dict() == results["overhead"]


def test_run_out_keeps_machine_and_pdx_options(capsys, tmp_path):
    rc, _, _ = run(capsys, "run", "--machine", "qemu-2node", "--pdx", "offset",
                   "--out", str(tmp_path), "--format", "json")
    assert rc == 0
    cfg = load_config(tmp_path / "config.yaml")
    assert build_memory_map(cfg) == load_preset("qemu-2node")
    assert cfg.machine.pdx == "offset"
    assert json.loads((tmp_path / "results.json").read_text())["overhead"]["pdx"]["mode"] \
        == "offset"


def test_run_out_with_memmap_file(capsys, tmp_path):
    rc, _, _ = run(capsys, "run", "--memmap", str(DMESG), "--out", str(tmp_path),
                   "--format", "json")
    assert rc == 0
    mm = build_memory_map(load_config(tmp_path / "config.yaml"))
    # 11 BIOS-e820 lines, 3 of them usable
    assert len(mm.ranges) == 11
    assert mm.frame_ranges == [(0x0, 0x9f), (0x100, 0xbffda), (0x100000, 0x140000)]


# ---------------------------------------------------------------------------
# overhead / machine / presets
# ---------------------------------------------------------------------------

def test_overhead_gnr_json(capsys):
    rc, out, _ = run(capsys, "overhead", "--machine", "intel-gnr-4s", "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert list(d) == OVERHEAD_KEYS
    assert d["machine"] == "intel-gnr-4s"
    assert d["ram_bytes"] == 2 ** 41
    assert d["max_pfn"] == 0x133e80000
    rows = {r["name"]: r for r in d["designs"]}
    assert rows["pageinfo-count"]["bytes"] == 4 * 2 ** 30          # 8 B * 2^29 frames
    assert rows["pageinfo-count"]["percent_of_ram"] == 0.1953125
    assert rows["sparse-8B"]["bytes"] == 8 * 2 ** 20               # 2048 chunks * 4 KiB
    assert rows["sparse-8B"]["entry_bytes"] == 8 * 2 ** 20


def test_overhead_memmap_dmesg(capsys):
    rc, out, _ = run(capsys, "overhead", "--memmap", str(DMESG), "--format", "json")
    assert rc == 0
    d = json.loads(out)
    # usable: [0, 0x9fc00) + [1 MiB, 0xbffda000) + [4 GiB, 5 GiB)
    #   0x9fc00 = 654,336; 0xbffda000 - 0x100000 = 0xbfeda000 = 3,220,021,248; 1 GiB
    #   = 1,073,741,824 -> 4,294,417,408 (the ACPI, NVS, reserved lines are not RAM)
    assert d["machine"] == "qemu-pc-4g-dmesg"
    assert d["ram_bytes"] == 654336 + 3220021248 + 1073741824 == 4294417408
    # frames 0x9f + (0xbffda - 0x100) + 0x40000 = 159 + 786,138 + 262,144
    assert d["ram_frames"] == 1048441
    assert d["max_pfn"] == 0x140000
    # groups 0..11 (0xbffda >> 16 = 11) and 16..19
    assert d["pdx_groups_with_ram"] == 16
    # superpages 0..1535 (0xbffd9 >> 9 = 1535) and 2048..2559; full: 1..1534 + 512
    assert d["superpages_with_ram"] == 2048
    assert d["superpages_full"] == 1534 + 512


def test_overhead_memmap_iomem_table(capsys):
    rc, out, _ = run(capsys, "overhead", "--memmap", str(IOMEM))
    assert rc == 0
    assert out.startswith("Refcount metadata on qemu-pc-4g-iomem: ")


def test_overhead_pdx_option(capsys):
    rc, out, _ = run(capsys, "overhead", "--machine", "qemu-2node", "--pdx", "none",
                     "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert d["pdx"]["mode"] == "none"
    assert d["max_pdx"] == 0x180000


def test_machine_qemu_2node_mentions_the_pdx_hole(capsys):
    rc, out, _ = run(capsys, "machine", "--machine", "qemu-2node")
    assert rc == 0
    words = lines_split(out)
    assert ["PDX", "mask:", "bit", "19", "of", "the", "PFN", "squeezed", "out", "(hole_shift",
            "1;", "max_pdx", "0x100000", "for", "max_pfn", "0x180000)"] in words
    # the hole between the nodes: frames [0x80000, 0x100000) = 2 GiB
    assert "Holes below max_pfn (frames that are not RAM)" in out
    assert ["0x80000", "0x100000", "2.00", "GiB"] in words


def test_machine_json(capsys):
    rc, out, _ = run(capsys, "machine", "--machine", "qemu-2node", "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert d["pdx"]["mode"] == "mask"
    assert d["pdx"]["hole_mask"] == 0x80000
    assert d["holes"] == [["0x80000000", "0x100000000"]]


def test_presets_lists_six(capsys):
    rc, out, _ = run(capsys, "presets")
    assert rc == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == PRESETS
    assert lines[-1].split()[:6] == ["teaching", "3.00", "GiB", "RAM", "max_pfn", "0x140000"]


# ---------------------------------------------------------------------------
# errors: one line on stderr, exit status 2, no traceback
# ---------------------------------------------------------------------------

def _expected_line(path: Path) -> str:
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("# Expect: "):
            return line[len("# Expect: "):]
    raise AssertionError(f"{path.name} has no '# Expect:' line")


BAD_FILES = sorted(p.name for p in BAD.glob("*.yaml"))


def test_bad_config_corpus_is_there():
    assert len(BAD_FILES) == 25


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_config_one_line_exit_2(capsys, monkeypatch, name):
    monkeypatch.chdir(BAD)          # the Expect lines give paths relative to tests/bad_configs
    rc, out, err = run(capsys, "run", name)
    assert rc == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    assert "Traceback" not in err
    line = err.rstrip("\n")
    assert line.startswith("xensim: error: ")
    assert line == "xensim: error: " + _expected_line(BAD / name)


def test_bad_config_named_with_its_path(capsys):
    rel = "tests/bad_configs/bad_pdx.yaml"
    rc, _, err = run(capsys, "overhead", str(REPO / rel))
    assert rc == 2
    assert err == (f"xensim: error: {REPO / rel}:5: machine.pdx: bad choice 'squeeze'; "
                   f"choose from: none, mask, offset, offset-4.21.0\n")


@pytest.mark.parametrize("command", ["run", "overhead", "machine"])
def test_unknown_preset_option(capsys, command):
    rc, out, err = run(capsys, command, "--machine", "pentium-pro")
    assert rc == 2
    assert out == ""
    assert err == ("xensim: error: machine.preset: unknown preset 'pentium-pro'; choose from: "
                   "firecracker-1g, intel-clx-2s, intel-gnr-4s, qemu-2node, qemu-pc-4g, "
                   "teaching\n")


def test_missing_memmap_file_option(capsys, tmp_path):
    missing = tmp_path / "nope.log"
    rc, _, err = run(capsys, "overhead", "--memmap", str(missing))
    assert rc == 2
    assert err == f"xensim: error: {missing}: no such file\n"


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    rc, _, err = run(capsys, "run", str(missing))
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"xensim: error: {missing}")


def test_bad_memmap_text_file(capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\nno memory map here\n")
    rc, _, err = run(capsys, "machine", "--memmap", str(f))
    assert rc == 2
    assert err.count("\n") == 1
    assert err.startswith(f"xensim: error: {f}: not a memory map")


def test_out_onto_a_file_is_one_line_error(capsys, tmp_path):
    f = tmp_path / "taken"
    f.write_text("")
    rc, _, err = run(capsys, "run", "--out", str(f))
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("xensim: error: ")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["overhead", "--format", "xml"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    capsys.readouterr()


# ---------------------------------------------------------------------------
# the module entry point, once, in a real process
# ---------------------------------------------------------------------------

def test_python_dash_m_xensim_run():
    proc = subprocess.run([sys.executable, "-m", "xensim", "run", "--format", "json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    d = json.loads(proc.stdout)
    assert d["overhead"]["machine"] == "teaching"
    assert d["overhead"]["pdx_groups_with_ram"] == 12


# --------------------------------------------------------------------------
# drift: the machine table, CSV, sizes, the README's claims
# --------------------------------------------------------------------------

def test_machine_table_has_a_header_row(capsys):
    rc, out, _ = run(capsys, "machine")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "Machine"
    assert lines[1].split() == ["item", "value"]


def test_machine_json_says_what_the_frame_table_costs_once_written(capsys):
    rc, out, _ = run(capsys, "machine", "--format", "json")
    d = json.loads(out)
    assert d["frame_table_allocated_bytes"] == 12                    # the group bitmap
    assert d["frame_table_all_groups_bytes"] == 12 * 65_536 * 18     # = xensim-frame-table
    ov = json.loads(run(capsys, "overhead", "--format", "json")[1])
    row = {r["name"]: r for r in ov["designs"]}["xensim-frame-table"]
    assert row["bytes"] == d["frame_table_all_groups_bytes"]


def test_machine_csv_carries_every_table_with_plain_values(capsys):
    rc, out, _ = run(capsys, "machine", "--format", "csv")
    assert rc == 0
    sections = out.split("\n\n")
    assert len(sections) == 3
    summary, ranges, holes = (list(csv.DictReader(io.StringIO(t))) for t in sections)
    kv = {r["key"]: r["value"] for r in summary}
    assert {r["table"] for r in summary} == {"machine"}
    assert kv["ram_bytes"] == "3220831232" and kv["max_pfn"] == str(0x140000)
    assert kv["pdx.mode"] == "mask" and kv["pdx_groups_with_ram"] == "12"
    assert kv["frame_table_all_groups_bytes"] == "14155776"
    assert [(r["table"], r["start"], r["end"], r["type"], r["bytes"]) for r in ranges][3] == \
        ("memory_map", str(0x100000), str(0x80000000), "ram", str(0x80000000 - 0x100000))
    assert [(r["first_mfn"], r["end_mfn"], r["frames"]) for r in holes] == [
        ("159", "256", "97"), (str(0x80000), str(0x100000), str(0x80000))]
    assert "MiB" not in out and "GiB" not in out and "," not in "".join(
        r["value"] for r in summary if r["key"] != "source")


def test_csv_floats_have_no_float_noise():
    from xensim.output._render import csv_value
    assert csv_value(900726.3999999999) == 900726.4
    assert csv_value(0.1 + 0.2) == 0.3
    assert csv_value(100 * 12288 / 3220831232) == 0.0003815164197   # 10 digits
    assert csv_value(7) == 7 and csv_value(None) == ""


def test_run_csv_modelled_ns_is_rounded(capsys):
    rc, out, _ = run(capsys, "run", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    for r in rows:
        for k in ("modelled_ns", "metadata_percent"):
            digits = r[k].replace(".", "").replace("-", "").lstrip("0").split("e")[0]
            assert len(digits) <= 10, (k, r[k])


@pytest.mark.parametrize("nbytes, text", [
    (0, "0 B"), (12, "12 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (12288, "12.00 KiB"),
    (14_155_776, "13.50 MiB"), (2 ** 30, "1.00 GiB"), (2 ** 31 - 2 ** 20, "2.00 GiB"),
    (2 ** 41, "2.00 TiB")])
def test_format_size_is_one_format(nbytes, text):
    from xensim.mem._units import format_size
    assert format_size(nbytes) == text


def test_presets_sizes_use_the_one_format(capsys):
    rc, out, _ = run(capsys, "presets")
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()}
    assert rows["teaching"] == ["3.00", "GiB"] and rows["qemu-pc-4g"] == ["4.00", "GiB"]
    assert rows["intel-gnr-4s"] == ["2.00", "TiB"] and rows["firecracker-1g"] == ["1023.62", "MiB"]


def test_empty_config_is_an_error_naming_the_file(capsys, tmp_path):
    for text in ("", "# only a comment\n\n"):
        f = tmp_path / "empty.yaml"
        f.write_text(text)
        rc, out, err = run(capsys, "run", str(f))
        assert rc == 2 and out == ""
        assert err == (f"xensim: error: {f}: the config is empty (no keys): give at least one "
                       "section such as machine: or workload:; `xensim run` without a file runs "
                       "the default comparison\n")
    f.write_text("{}\n")                                  # explicit: every default, no workload
    rc, out, _ = run(capsys, "run", str(f))
    assert rc == 0 and out.startswith("Refcount metadata on teaching")


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_sample_error_is_the_real_one(capsys, tmp_path, monkeypatch):
    """The README's bad config (`my.yaml`) gives exactly the error line it shows."""
    text = README.read_text()
    at = text.index("For example, `my.yaml`:")
    yaml_block = text[at:].split("```yaml\n", 1)[1].split("```", 1)[0]
    error_block = text[at:].split("\n```\nxensim: error:", 1)[1].split("\n```", 1)[0]
    (tmp_path / "my.yaml").write_text(yaml_block)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "run", "my.yaml")
    assert rc == 2 and out == ""
    assert err == "xensim: error:" + error_block + "\n"


def test_readme_says_which_commands_take_which_formats():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    formats = {}
    for name, p in sub.choices.items():
        fmt = [a for a in p._actions if "--format" in a.option_strings]
        formats[name] = "|".join(fmt[0].choices) if fmt else None
    assert formats == {"run": "table|json|csv|md", "overhead": "table|json|csv|md",
                       "machine": "table|json|csv|md", "presets": None,
                       "designs": "table|json|md", "explore": None,
                       "fuzz": None, "trace": "text|md", "inspect": "text|md|json", "plot": None,
                       "sweep": None}
    text = " ".join(README.read_text().split())
    assert ("`run`, `overhead` and `machine` take `--format table|json|csv|md`" in text)
    assert ("`inspect` takes `--format text|md|json`, `designs` takes `--format table|json|md`, "
            "`trace` takes `--format text|md`") in text
    assert "`plot`, `presets`, `explore`, `fuzz` and `sweep` have no `--format`" in text


# --------------------------------------------------------------------------
# words that said something else than what is printed
# --------------------------------------------------------------------------

def test_the_machine_table_after_a_run_says_it_is_the_machine_as_booted(capsys):
    """Each design runs on a fresh copy of the machine: the table after the comparison is
    the machine before any domain, and says so (not "allocated so far")."""
    rc, out, _ = run(capsys, "run", "tests/data/trace-small.yaml", "--quiet")
    assert rc == 0
    assert ("Machine as booted, before any domain (each design above ran on a fresh copy of "
            "it)") in out.splitlines()
    assert "so far" not in out
    assert [ln for ln in out.splitlines() if ln.startswith("frame table allocated")] == [
        "frame table allocated      1 B at boot (a group's arrays are created on its first "
        "write; all 1: 1.12 MiB)"]


def test_a_map_without_holes_has_no_empty_holes_table(capsys):
    rc, out, _ = run(capsys, "machine", "tests/data/trace-small.yaml")
    assert rc == 0 and "Holes" not in out
    assert out.splitlines()[-1] == "  no holes below max_pfn: every frame below it is RAM"


def test_every_table_has_its_column_headers(capsys):
    """overhead's machine table and designs: no blank header."""
    for argv in (["overhead"], ["designs"], ["machine"]):
        rc, out, _ = run(capsys, *argv)
        blocks = [b.splitlines() for b in out.split("\n\n")]
        for b in blocks:
            if len(b) > 2 and set(b[2]) <= {"-", " "}:
                heads, rule = b[1], b[2]
                cols, i = [], 0
                for dashes in rule.split("  "):
                    cols.append(heads[i:i + len(dashes)].strip())
                    i += len(dashes) + 2
                assert all(cols), (argv, b[0], cols)


def test_run_help_counts_the_designs(capsys):
    from xensim.designs import design_names
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    words = {4: "four", 5: "five", 6: "six", 7: "seven"}
    assert f"{words[len(design_names())]} designs" in " ".join(capsys.readouterr().out.split())
