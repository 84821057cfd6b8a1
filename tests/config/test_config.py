"""Config loading, presets, memory-map files and the error corpus in tests/bad_configs."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xensim.config import _yamlsrc
from xensim.config import (Config, HypervisorConfig, MachineConfig, RangeConfig,
                           build_memory_map, default_config, default_config_path, dump_resolved,
                           format_path, list_presets, load_config, load_dataclass,
                           load_memmap_file, load_preset, load_yaml, parse_config, preset_dir,
                           resolved_config, size)
from xensim.designs import design_names
from xensim._errors import ConfigError
from xensim.mem import E820Type, GiB, MAX_ORDER, MemoryMap, MiB

#: the designs a config may name, in the order its messages list them
DESIGNS = design_names()

HERE = Path(__file__).resolve().parents[1]
BAD = HERE / "bad_configs"
PRESETS = ["firecracker-1g", "intel-clx-2s", "intel-gnr-4s", "qemu-2node", "qemu-pc-4g",
           "teaching"]


def corpus_error(name: str, monkeypatch: pytest.MonkeyPatch) -> ConfigError:
    """Load tests/bad_configs/NAME (from inside that directory) and return its error."""
    monkeypatch.chdir(BAD)
    with pytest.raises(ConfigError) as info:
        build_memory_map(load_config(name))
    return info.value


def expect(err: ConfigError, file: str | None, path: str | None, line: int | None,
           message: str) -> None:
    """Check every part of an error, and that it renders as one line."""
    assert (err.file, err.path, err.line) == (file, path, line), str(err)
    assert err.message == message, str(err)
    assert "\n" not in str(err)


# --------------------------------------------------------------------------
# The corpus: every file says what it tests and the exact message
# --------------------------------------------------------------------------

CORPUS = sorted(p.name for p in BAD.glob("*.yaml"))


def _header(name: str) -> tuple[str, str]:
    lines = (BAD / name).read_bytes().decode("utf-8", "replace").splitlines()
    assert lines[0].startswith("# Tests: "), f"{name}: first line must say what it tests"
    assert lines[1].startswith("# Expect: "), f"{name}: second line must give the message"
    return lines[0][len("# Tests: "):], lines[1][len("# Expect: "):]


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_file_gives_its_expected_message(name, monkeypatch):
    _, expected = _header(name)
    err = corpus_error(name, monkeypatch)
    assert str(err) == expected
    assert "\n" not in str(err)


def test_corpus_has_one_file_per_kind_of_error():
    kinds = {
        "yaml_syntax", "top_not_mapping", "unknown_top_key", "unknown_nested_key",
        "wrong_type_bool", "wrong_type_str", "bad_size", "negative_size", "huge_address",
        "end_not_above_start", "overlapping_ranges", "unknown_preset", "unknown_design",
        "bad_pdx", "two_map_sources", "missing_memmap_file", "bad_boot_log",
        "duplicate_key", "bad_version", "missing_required", "bad_range_type",
        "bad_memmap_yaml", "non_utf8", "wrong_range_items", "bad_vcpus",
    }
    assert {Path(n).stem for n in CORPUS} == kinds
    messages = [_header(n)[1] for n in CORPUS]
    assert len(set(messages)) == len(messages)


# --------------------------------------------------------------------------
# One test per kind of error, checking file, key path, line and reason
# --------------------------------------------------------------------------

def test_yaml_syntax_error(monkeypatch):
    err = corpus_error("yaml_syntax.yaml", monkeypatch)
    expect(err, "yaml_syntax.yaml", None, 6,
           "invalid YAML: expected ',' or ']', but got ':' "
           "(while parsing a flow sequence on line 5)")


def test_top_level_not_a_mapping(monkeypatch):
    err = corpus_error("top_not_mapping.yaml", monkeypatch)
    expect(err, "top_not_mapping.yaml", None, 3,
           "the top level must be a mapping (of sections such as machine: and "
           "hypervisor:), got a list")


def test_top_level_scalar():
    with pytest.raises(ConfigError) as info:
        parse_config("just a string\n", "s.yaml")
    assert str(info.value) == ("s.yaml:1: the top level must be a mapping (of sections "
                               "such as machine: and hypervisor:), got 'just a string'")


def test_unknown_top_level_key(monkeypatch):
    err = corpus_error("unknown_top_key.yaml", monkeypatch)
    expect(err, "unknown_top_key.yaml", "hypervisr", 5,
           "unknown key 'hypervisr' (did you mean 'hypervisor'?); "
           "allowed keys: machine, hypervisor, workload, compare, domains, seed, cost_model, "
           "audit_every, design_files")


def test_unknown_nested_key(monkeypatch):
    err = corpus_error("unknown_nested_key.yaml", monkeypatch)
    expect(err, "unknown_nested_key.yaml", "machine.pdx_mode", 5,
           "unknown key 'pdx_mode'; allowed keys: preset, memory_map, memory_map_file, "
           "pdx, name, source")


def test_wrong_type_bool_given_a_string(monkeypatch):
    err = corpus_error("wrong_type_bool.yaml", monkeypatch)
    expect(err, "wrong_type_bool.yaml", "hypervisor.allow_superpage", 5,
           "expected a boolean, got 'yes please'")


def test_wrong_type_str_given_a_list(monkeypatch):
    err = corpus_error("wrong_type_str.yaml", monkeypatch)
    expect(err, "wrong_type_str.yaml", "hypervisor.superpage", 6,
           "expected a string, got a list")


def test_bad_size(monkeypatch):
    err = corpus_error("bad_size.yaml", monkeypatch)
    assert (err.file, err.path, err.line) == ("bad_size.yaml", "machine.memory_map[1].end", 6)
    assert err.message.startswith("bad size '2 gigs': ")


def test_negative_size(monkeypatch):
    err = corpus_error("negative_size.yaml", monkeypatch)
    expect(err, "negative_size.yaml", "machine.memory_map[0].start", 5,
           "size must not be negative, got -1")


def test_address_past_52_bits(monkeypatch):
    err = corpus_error("huge_address.yaml", monkeypatch)
    expect(err, "huge_address.yaml", "machine.memory_map[1].end", 6,
           "end 0x20000000000000 is past the 52-bit physical address space "
           "(max 0x10000000000000)")


def test_end_not_above_start(monkeypatch):
    err = corpus_error("end_not_above_start.yaml", monkeypatch)
    expect(err, "end_not_above_start.yaml", "machine.memory_map[2].end", 7,
           "end 0x100000000 must be greater than start 0x200000000")


def test_overlapping_ranges_name_the_later_range(monkeypatch):
    err = corpus_error("overlapping_ranges.yaml", monkeypatch)
    expect(err, "overlapping_ranges.yaml", "machine.memory_map[2].start", 7,
           "ranges memory_map[1] [0x100000, 0x80000000) ram and memory_map[2] "
           "[0x7ff00000, 0x80100000) reserved overlap")


def test_unknown_preset(monkeypatch):
    err = corpus_error("unknown_preset.yaml", monkeypatch)
    expect(err, "unknown_preset.yaml", "machine.preset", 5,
           "unknown preset 'pentium-pro'; choose from: " + ", ".join(PRESETS))


def test_unknown_design(monkeypatch):
    err = corpus_error("unknown_design.yaml", monkeypatch)
    expect(err, "unknown_design.yaml", "hypervisor.superpage", 4,
           "unknown design 'xen-9.9'; choose from: " + ", ".join(DESIGNS))


def test_bad_pdx_choice(monkeypatch):
    err = corpus_error("bad_pdx.yaml", monkeypatch)
    expect(err, "bad_pdx.yaml", "machine.pdx", 5,
           "bad choice 'squeeze'; choose from: none, mask, offset, offset-4.21.0")


def test_two_map_sources(monkeypatch):
    err = corpus_error("two_map_sources.yaml", monkeypatch)
    expect(err, "two_map_sources.yaml", "machine", 3,
           "give only one of preset, memory_map, memory_map_file "
           "(got preset and memory_map)")


def test_missing_memory_map_file(monkeypatch):
    err = corpus_error("missing_memmap_file.yaml", monkeypatch)
    expect(err, "missing_memmap_file.yaml", "machine.memory_map_file", 4,
           "no such file: files/no-such-dmesg.log")


def test_bad_boot_log_names_the_log_and_its_line(monkeypatch):
    err = corpus_error("bad_boot_log.yaml", monkeypatch)
    expect(err, "files/bad-e820.log", None, 5, "bad end address '0x00000000bffdfxyz'")


def test_bad_yaml_memmap_file_names_the_path_inside_it(monkeypatch):
    err = corpus_error("bad_memmap_yaml.yaml", monkeypatch)
    expect(err, "files/bad-map.yaml", "ram[2].end", 7,
           "end 0x80000000 must be greater than start 0x100000000")


def test_duplicate_key(monkeypatch):
    err = corpus_error("duplicate_key.yaml", monkeypatch)
    expect(err, "duplicate_key.yaml", "machine.pdx", 6,
           "duplicate key 'pdx' (first given on line 5)")


def test_unquoted_version_4_10_is_refused_as_written(monkeypatch):
    err = corpus_error("bad_version.yaml", monkeypatch)
    assert (err.path, err.line) == ("hypervisor.version", 4)
    assert err.message.startswith("bad choice 4.10; choose from: 4.1, 4.5, 4.7, 4.8, 4.22")


def test_missing_required_key(monkeypatch):
    err = corpus_error("missing_required.yaml", monkeypatch)
    expect(err, "missing_required.yaml", "machine.memory_map[1]", 6,
           "missing required key 'end'")


def test_bad_range_type(monkeypatch):
    err = corpus_error("bad_range_type.yaml", monkeypatch)
    assert (err.path, err.line) == ("machine.memory_map[1].type", 6)
    assert "'rom'" in err.message and "'reserved'" in err.message


def test_wrong_number_of_range_items(monkeypatch):
    err = corpus_error("wrong_range_items.yaml", monkeypatch)
    expect(err, "wrong_range_items.yaml", "machine.memory_map[0]", 5,
           "expected [start, end] or [start, end, type], got 4 items")


def test_non_utf8_file(monkeypatch):
    err = corpus_error("non_utf8.yaml", monkeypatch)
    expect(err, "non_utf8.yaml", None, 5, "not UTF-8 text: cannot decode byte 0xe9")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    expect(info.value, str(tmp_path / "nope.yaml"), None, None, "no such file")


def test_directory_as_config(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    expect(info.value, str(tmp_path), None, None, "is a directory, not a file")


@pytest.mark.parametrize("text, path, line, start", [
    ("machine:\n  pdx: [mask\n", None, 3, "invalid YAML:"),
    ("--- {}\n--- {}\n", None, 2, "invalid YAML: but found another document"),
    ("machine: {}\x00\n", None, 1, "invalid YAML: character U+0000 is not allowed"),
    ("machine:\n\tpreset: x\n", None, 2, "invalid YAML: found character '\\t'"),
    ("machine: *nowhere\n", None, 1, "invalid YAML: found undefined alias 'nowhere'"),
    ("machine: !!python/object:os.system {}\n", "machine", 1, "unsupported YAML tag"),
    ("machine:\n  name: !!int abc\n", "machine.name", 2, "bad int value 'abc'"),
    ("machine:\n  ? [a]\n  : b\n", "machine", 2, "a mapping key must be a plain value"),
    ("a: &x [*x]\n", "a[0]", 1, "recursive alias"),
    ("machine: 5\n", "machine", 1, "expected a mapping, got an integer (5)"),
    ("machine:\n  5: x\n", "machine.5", 2, "unknown key 5; allowed keys: preset,"),
    ("machine:\n  name: 2024-01-01\n", "machine.name", 2, "expected a string, got a date"),
    ("machine:\n  memory_map: [[0, 1.5]]\n", "machine.memory_map[0].end", 2,
     "expected a size such as 2GiB or 0x1000, got float"),
    ("machine:\n  memory_map: [[0, true]]\n", "machine.memory_map[0].end", 2,
     "expected a size, got a boolean"),
    ("machine:\n  memory_map: [0x1000]\n", "machine.memory_map[0]", 2,
     "expected a mapping or a list [start, end, type], got an integer (4096)"),
    ("machine:\n  memory_map: []\n", "machine.memory_map", 2, "memory map 'custom' is empty"),
    ("machine:\n  memory_map: [[0, 0x100000, reserved]]\n", "machine.memory_map", 2,
     "memory map 'custom' has no RAM"),
    ("hypervisor:\n  faithful: 1\n", "hypervisor.faithful", 2,
     "expected a boolean, got an integer (1)"),
])
def test_more_malformed_input(text, path, line, start):
    with pytest.raises(ConfigError) as info:
        build_memory_map(parse_config(text, "t.yaml"))
    err = info.value
    assert (err.file, err.path, err.line) == ("t.yaml", path, line), str(err)
    assert err.message.startswith(start), str(err)
    assert "\n" not in str(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from([
        "machine:", "hypervisor:", "  preset: teaching", "  pdx: none", "  memory_map:",
        "    - [0, 0x9fc00]", "    - [0x100000, 2GiB, reserved]", "    - {start: 1}",
        "  version: 4.1", "  superpage: [", "  allow_superpage: maybe", "- x", "a: &a [*a]",
        "  memory_map_file: /dev/null", "  memory_map_file: /", "  <<: {pdx: mask}",
        "  name: !!binary aGk=", "? [x]\n: y", "  - 0xffffffffffffffffffff", "'", "\t",
    ]), max_size=12).map("\n".join),
))
def test_nothing_but_config_error_escapes(text):
    try:
        build_memory_map(parse_config(text, "fuzz.yaml"))
    except ConfigError as err:
        assert "\n" not in str(err)
        assert str(err).startswith("fuzz.yaml") or str(err).startswith("/")


# --------------------------------------------------------------------------
# ConfigError
# --------------------------------------------------------------------------

def test_config_error_format_omits_missing_parts():
    assert str(ConfigError("configs/x.yaml", "machine.memory_map[2].end",
                           "end 0x1000 is not above start 0x2000", 7)) == \
        "configs/x.yaml:7: machine.memory_map[2].end: end 0x1000 is not above start 0x2000"
    assert str(ConfigError("x.yaml", None, "no such file")) == "x.yaml: no such file"
    assert str(ConfigError(None, "machine.preset", "unknown")) == "machine.preset: unknown"
    assert str(ConfigError(None, None, "two\nlines", 3)) == "line 3: two lines"


def test_config_error_pickles():
    err = ConfigError("f.yaml", "machine.pdx", "bad", 4)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.line == 4


# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("written, value", [
    ("2GiB", 2 * GiB), ("512MiB", 512 * MiB), ("0x1000", 0x1000), ("4096", 4096),
    ("'0x1000'", 0x1000), ("4k", 4096), ("1 GiB", GiB),
])
def test_sizes_accepted(written, value):
    cfg = parse_config(f"machine:\n  memory_map:\n    - start: 0\n      end: {written}\n")
    assert cfg.machine.memory_map[0].end == value


@pytest.mark.parametrize("written, message", [
    ("2 gigs", "bad size '2 gigs': "),
    ("1.5GiB", "bad size '1.5GiB': "),
    ("-1", "size must not be negative, got -1"),
    ("'0xzz'", "bad hexadecimal size '0xzz'"),
    ("2GB", "size '2GB' is ambiguous (decimal or binary?): write 2GiB (binary, 2 x "
            "1,073,741,824 bytes) or the bytes in full; units: KiB, MiB, GiB, TiB (K, M, G, T)"),
    ("64mb", "size '64mb' is ambiguous (decimal or binary?): write 64MiB"),
    ("1TB", "size '1TB' is ambiguous (decimal or binary?): write 1TiB"),
])
def test_sizes_refused(written, message):
    with pytest.raises(ConfigError) as info:
        parse_config(f"machine:\n  memory_map:\n    - [0, {written}]\n", "s.yaml")
    assert info.value.path == "machine.memory_map[0].end"
    assert info.value.line == 3
    assert info.value.message.startswith(message)


def test_inline_map_in_all_three_forms():
    cfg = parse_config("machine:\n  memory_map:\n"
                       "    - [0x0, 0x9fc00]\n"
                       "    - [0x9fc00, 0xa0000, reserved]\n"
                       "    - {start: 1MiB, end: 1GiB}\n"
                       "    - {start: 4GiB, end: 5GiB, type: usable}\n")
    mm = build_memory_map(cfg)
    assert mm.name == "custom"
    assert [(r.start, r.end, r.type) for r in mm.ranges] == [
        (0, 0x9fc00, E820Type.RAM), (0x9fc00, 0xa0000, E820Type.RESERVED),
        (MiB, GiB, E820Type.RAM), (4 * GiB, 5 * GiB, E820Type.RAM)]


# --------------------------------------------------------------------------
# Defaults and choices
# --------------------------------------------------------------------------

def test_defaults_filled():
    cfg = parse_config("")
    assert cfg.machine == MachineConfig(preset="teaching")
    assert cfg.machine.pdx == "mask"
    assert cfg.hypervisor == HypervisorConfig(version="4.8", allow_superpage=True,
                                              superpage="xen-4.1", faithful=False)
    assert cfg.source == "<string>"
    # A section given without keys, or only another section: still all defaults.
    assert parse_config("machine:\n").machine.preset == "teaching"
    assert parse_config("hypervisor:\n  faithful: true\n").machine.preset == "teaching"


def test_default_config_is_the_teaching_machine():
    assert default_config_path().is_file()
    cfg = default_config()
    assert cfg.source == str(default_config_path())
    assert (cfg.machine, cfg.hypervisor) == (parse_config("").machine,
                                             parse_config("").hypervisor)
    mm = build_memory_map(cfg)
    assert mm.name == "teaching" and mm == load_preset("teaching")


@pytest.mark.parametrize("written, version", [
    ("4.1", "4.1"), ("4.5", "4.5"), ("4.7", "4.7"), ("4.8", "4.8"), ("'4.8'", "4.8"),
    ('"4.1"', "4.1"),
])
def test_versions_accepted_as_numbers_or_strings(written, version):
    assert parse_config(f"hypervisor:\n  version: {written}\n").hypervisor.version == version


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_accepted(design):
    assert parse_config(f"hypervisor:\n  superpage: {design}\n").hypervisor.superpage == design


@pytest.mark.parametrize("mode", ["none", "mask", "offset"])
def test_pdx_modes(mode):
    assert parse_config(f"machine:\n  pdx: {mode}\n").machine.pdx == mode


def test_yaml_merge_keys_and_lines():
    doc = load_yaml("base: &b\n  pdx: none\n  preset: qemu-2node\n"
                    "machine:\n  <<: *b\n  pdx: offset\n  memory_map:\n    - [0, 1]\n", "m")
    assert doc.data["machine"] == {"pdx": "offset", "preset": "qemu-2node",
                                   "memory_map": [[0, 1]]}
    assert doc.lines[("machine",)] == 4
    assert doc.lines[("machine", "pdx")] == 6
    assert doc.lines[("machine", "memory_map", 0, 1)] == 8
    assert doc.line(("machine", "memory_map", 0, 1, "nope")) == 8
    assert format_path(("machine", "memory_map", 2, "end")) == "machine.memory_map[2].end"


def test_alias_expansion_is_bounded(monkeypatch):
    monkeypatch.setattr(_yamlsrc, "MAX_ALIAS_VALUES", 500)
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" \
           "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
           "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    with pytest.raises(ConfigError, match=r"^bomb.yaml:1: c\[3\]\[5\]\[0\]: aliases expand to "
                                          r"more than 500 values \(a document of repeated "
                                          r"aliases\)$"):
        load_yaml(text, "bomb.yaml")


def test_values_written_out_are_not_bounded_like_aliases(monkeypatch):
    """Only alias expansions count: a document of 3,000 values written out loads
    under an alias limit of 500, and a few aliases within the limit load too."""
    monkeypatch.setattr(_yamlsrc, "MAX_ALIAS_VALUES", 500)
    text = "ram:\n" + "".join(f"  - [{i * 8192:#x}, {i * 8192 + 4096:#x}]\n" for i in range(1000))
    doc = load_yaml(text + "x: &x [1, 2]\ny: [*x, *x]\n", "big.yaml")
    assert len(doc.data["ram"]) == 1000 and doc.data["ram"][999] == [999 * 8192, 999 * 8192 + 4096]
    assert doc.data["y"] == [[1, 2], [1, 2]]
    assert doc.lines[("ram", 999, 1)] == 1001


@dataclass
class Phase:
    __yaml_sequence__ = ("name", "pages")
    name: str
    pages: size


@dataclass
class Workload:
    kind: Literal["boot", "balloon"] = "boot"
    domains: int = 1
    ratio: float = 0.5
    seed: int | None = None
    phases: list[Phase] = field(default_factory=list)


def test_generic_loader_takes_new_sections():
    """A later section (e.g. workload:) needs only a dataclass."""
    doc = load_yaml("kind: balloon\nratio: 1\nphases:\n  - [warm, 2MiB]\n"
                    "  - {name: cold, pages: 0x1000}\n", "w.yaml")
    w = load_dataclass(Workload, doc)
    assert w == Workload("balloon", 1, 1.0, None, [Phase("warm", 2 * MiB), Phase("cold", 4096)])
    bad = load_yaml("domains: two\n", "w.yaml")
    with pytest.raises(ConfigError) as info:
        load_dataclass(Workload, bad)
    assert str(info.value) == "w.yaml:1: domains: expected an integer, got 'two'"
    bad = load_yaml("phases:\n  - [warm]\n", "w.yaml")
    with pytest.raises(ConfigError) as info:
        load_dataclass(Workload, bad)
    assert str(info.value) == "w.yaml:2: phases[0]: expected [name, pages], got 1 item"


# --------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------

def test_list_presets_returns_exactly_the_six():
    assert list_presets() == PRESETS
    assert preset_dir() == Path(__file__).resolve().parents[2] / "configs" / "machines"


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_loads(name):
    mm = build_memory_map(parse_config(f"machine:\n  preset: {name}\n"))
    assert isinstance(mm, MemoryMap)
    assert mm.name == name and mm.source
    assert mm.ram_frames > 0
    assert mm == load_preset(name)


# The real machines' maps as first published with their sources (SHA-256 of each file,
# taken when the presets were checked byte for byte against the published maps). Every
# exact value the tests assert on these machines depends on these bytes: a change to a
# preset must be deliberate, and then this table changes with it.
PRESET_SHA256 = {
    "firecracker-1g": "a585b936193d7ea1e5180f905474f334ad2fdaca3a99d615a6815c500356b03a",
    "intel-clx-2s": "2584f313e8af98da6e294659c86fe50dd6fe3520453ed53ceb58b6d1f44ce5ee",
    "intel-gnr-4s": "a026736cda8a597bc14312eeb51579e09a14e4f07a22d51d166f8b10e9ee293d",
    "qemu-2node": "0503efc12b2426d4a447ec791c0dc974531e9f463f993e9a5eaa7afd42dd4cc0",
    "qemu-pc-4g": "58a18415f15c3c1788d96015e777feb689c2401f064fc7085b6aa7e63e5c96f0",
}


@pytest.mark.parametrize("name", [p for p in PRESETS if p != "teaching"])
def test_presets_are_the_published_maps(name):
    data = (preset_dir() / f"{name}.yaml").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PRESET_SHA256[name]


def test_load_preset_unknown():
    with pytest.raises(ConfigError) as info:
        load_preset("x")
    expect(info.value, None, "machine.preset", None,
           "unknown preset 'x'; choose from: " + ", ".join(PRESETS))


def test_teaching_machine_layout_and_pdx_bits():
    mm = load_preset("teaching")
    assert mm.ram_bytes == 0x9fc00 + (2 * GiB - MiB) + GiB        # about 3 GiB
    assert max(r.end for r in mm.ranges) == 5 * GiB
    assert {r.type for r in mm.ranges} == {E820Type.RAM, E820Type.RESERVED}
    # The first superpage is only partly RAM; the 2-4 GiB hole is the big one.
    assert not mm.is_ram(0x9f) and mm.is_ram(0x9e) and mm.is_ram(0x100)
    assert max(e - s for s, e in mm.holes) == (4 * GiB - 2 * GiB) >> 12
    # The OR of the bases and moving bits of the RAM frame ranges, as the
    # comment in teaching.yaml works out: only bit 19 is zero above MAX_ORDER.
    mask = 0
    for s, e in mm.frame_ranges:
        mask |= s | ((1 << (s ^ (e - 1)).bit_length()) - 1)
    assert mask == 0x17ffff
    zero = [b for b in range(MAX_ORDER, mask.bit_length()) if not mask >> b & 1]
    assert zero == [19]


# --------------------------------------------------------------------------
# Memory-map files
# --------------------------------------------------------------------------

BOOT_LOG = """\
[    0.000000] Linux version 6.1.0-18-amd64
[    0.000000] BIOS-provided physical RAM map:
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x00000000bffdffff] usable
[    0.000000] BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] usable
"""

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-bffdffff : System RAM
  01000000-01ffffff : Kernel code
100000000-13fffffff : System RAM
"""


def test_memory_map_file_is_relative_to_the_config(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "maps").mkdir(parents=True)
    (tmp_path / "cfg" / "maps" / "host.log").write_text(BOOT_LOG)
    (tmp_path / "cfg" / "my.yaml").write_text("machine:\n  memory_map_file: maps/host.log\n")
    monkeypatch.chdir(tmp_path)
    mm = build_memory_map(load_config("cfg/my.yaml"))
    assert mm.name == "host"
    assert mm.source == os.path.join("cfg", "maps", "host.log")
    assert mm.ram_bytes == 0x9fc00 + (0xbffe0000 - 0x100000) + GiB


def test_memory_map_file_proc_iomem_and_yaml(tmp_path):
    (tmp_path / "iomem.txt").write_text(IOMEM)
    mm = load_memmap_file(tmp_path / "iomem.txt")
    assert [(r.start, r.end) for r in mm.ram_ranges] == [
        (0x1000, 0x9fc00), (0x100000, 0xbffe0000), (0x100000000, 0x140000000)]
    (tmp_path / "map.yaml").write_text(
        "name: two\nram:\n  - [0x0, 1GiB]\nother:\n  - [1GiB, 0x40100000, acpi]\n")
    mm = load_memmap_file(tmp_path / "map.yaml")
    assert mm.name == "two" and mm.source == str(tmp_path / "map.yaml")
    assert [r.type for r in mm.ranges] == [E820Type.RAM, E820Type.ACPI]
    # A YAML map with a 'ram' key is recognised whatever the file is called.
    (tmp_path / "map.txt").write_text("ram: [[0, 0x100000]]\n")
    assert load_memmap_file(tmp_path / "map.txt").ram_bytes == 0x100000


def test_memory_map_file_of_100000_ranges_loads(tmp_path):
    """A large real map (100,000 RAM ranges, no aliases) loads (the alias bound counts
    alias expansions only); an error in its last range still names its key path and line."""
    starts = [0x100000000 + i * 0x400000 for i in range(100_000)]
    yml = "name: big\nram:\n" + "".join(f"  - [{s:#x}, {s + 0x200000:#x}]\n" for s in starts)
    (tmp_path / "big.yaml").write_text(yml)
    mm = load_memmap_file(tmp_path / "big.yaml")
    assert mm.ram_bytes == 100_000 * 0x200000
    assert [(r.start, r.end) for r in mm.ram_ranges] == [(s, s + 0x200000) for s in starts]
    (tmp_path / "bad.yaml").write_text(yml.rsplit("  - ", 1)[0] + "  - [0x1000, 0x0]\n")
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path / "bad.yaml")
    assert info.value.path == "ram[99999].end" and info.value.line == 100_002


def test_memory_map_file_errors(tmp_path):
    (tmp_path / "ovl.log").write_text(
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n"
        "BIOS-e820: [mem 0x0000000000090000-0x000000000009ffff] reserved\n")
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path / "ovl.log")
    expect(info.value, str(tmp_path / "ovl.log"), None, 2,
           "ranges [0x0, 0x9fc00) ram and [0x90000, 0xa0000) reserved overlap")
    (tmp_path / "junk.txt").write_text("hello\n")
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path / "junk.txt")
    assert info.value.message.startswith("not a memory map")
    (tmp_path / "noram.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path / "noram.yaml")
    expect(info.value, str(tmp_path / "noram.yaml"), None, 1, "missing required key 'ram'")
    (tmp_path / "ovl.yaml").write_text("ram:\n  - [0, 0x200000]\nother:\n"
                                       "  - [0x100000, 0x180000, reserved]\n")
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path / "ovl.yaml")
    assert (info.value.path, info.value.line) == ("other[0].start", 4)
    with pytest.raises(ConfigError) as info:
        load_memmap_file(tmp_path)
    assert info.value.message == "is a directory, not a file"


# --------------------------------------------------------------------------
# The resolved config
# --------------------------------------------------------------------------

def _round_trip(cfg: Config, path: Path) -> tuple[dict, dict]:
    mm = build_memory_map(cfg)
    first = dump_resolved(cfg, mm, path)
    again = load_config(path)
    mm2 = build_memory_map(again)
    assert mm2 == mm and mm2.name == mm.name and mm2.source == mm.source
    return first, resolved_config(again, mm2)


@pytest.mark.parametrize("name", PRESETS)
def test_resolved_config_round_trips_for_presets(name, tmp_path):
    cfg = parse_config(f"machine:\n  preset: {name}\n  pdx: offset\n"
                       f"hypervisor:\n  version: 4.5\n  faithful: yes\n")
    first, second = _round_trip(cfg, tmp_path / "resolved.yaml")
    assert first == second
    assert first["machine"]["pdx"] == "offset"
    assert first["hypervisor"] == {"version": "4.5", "allow_superpage": True,
                                   "superpage": "xen-4.1", "faithful": True}
    assert os.listdir(tmp_path) == ["resolved.yaml"]         # no temporary left behind


def test_resolved_config_spells_everything_out(tmp_path):
    cfg = default_config()
    data = resolved_config(cfg, build_memory_map(cfg))
    # the default config simulates: its workload, compare, domains, ... are spelled out too
    assert list(data) == ["machine", "hypervisor", "workload", "compare", "domains", "seed",
                          "cost_model", "audit_every"]
    assert data["machine"] == {
        "name": "teaching",
        "source": load_preset("teaching").source,
        "memory_map": [["0x0", "0x9fc00", "ram"], ["0x9fc00", "0xa0000", "reserved"],
                       ["0xf0000", "0x100000", "reserved"], ["0x100000", "0x80000000", "ram"],
                       ["0xfec00000", "0xfee01000", "reserved"],
                       ["0x100000000", "0x140000000", "ram"]],
        "pdx": "mask",
    }
    dump_resolved(cfg, build_memory_map(cfg), tmp_path / "r.yaml")
    text = (tmp_path / "r.yaml").read_text()
    assert text.startswith("#") and "- ['0x0', '0x9fc00', ram]" in text
    assert yaml.safe_load(text) == data


def test_resolved_config_round_trips_for_inline_and_files(tmp_path):
    inline = parse_config("machine:\n  name: lab\n  memory_map:\n    - [0, 0x9fc00]\n"
                          "    - [1MiB, 3GiB]\n    - [0xfec00000, 0xfec01000, reserved]\n")
    first, second = _round_trip(inline, tmp_path / "a.yaml")
    assert first == second and first["machine"]["name"] == "lab"
    (tmp_path / "host.log").write_text(BOOT_LOG)
    (tmp_path / "c.yaml").write_text("machine:\n  memory_map_file: host.log\n"
                                     "  source: my laptop\n")
    first, second = _round_trip(load_config(tmp_path / "c.yaml"), tmp_path / "b.yaml")
    assert first == second
    assert first["machine"]["name"] == "host"
    assert first["machine"]["source"] == "my laptop"
    # Writing over an existing file replaces it.
    dump_resolved(inline, build_memory_map(inline), tmp_path / "b.yaml")
    assert load_config(tmp_path / "b.yaml").machine.name == "lab"


def test_config_dataclasses_are_plain():
    cfg = parse_config("machine:\n  memory_map: [[0, 1GiB]]\n")
    assert dataclasses.is_dataclass(cfg)
    assert cfg.machine.memory_map == [RangeConfig(0, GiB, "ram")]
    assert cfg.key_lines["machine.memory_map[0].end"] == 2
    assert re.fullmatch(r"Config\(machine=.*source='<string>'\)", repr(cfg))


# -- one Release type: the modelled Xen versions ------------------------------------------
def test_release_parse_order_and_text():
    from xensim.xen import LATEST_RELEASE, RELEASE_NAMES, RELEASES, Release
    assert RELEASE_NAMES == ("4.1", "4.5", "4.7", "4.8", "4.22")
    assert Release.R4_8 < Release.R4_22 and str(Release.R4_22) == "4.22"
    assert [Release.parse(v) for v in RELEASE_NAMES] == sorted(RELEASES) == list(RELEASES)
    assert Release.parse("4.5") is Release.R4_5 and Release.parse(Release.R4_7) is Release.R4_7
    assert Release.R4_1 < Release.R4_5 <= Release.R4_5 < Release.R4_7 < Release.R4_8
    assert Release.R4_8 > Release.R4_7 >= Release.R4_7 and not Release.R4_1 >= Release.R4_5
    assert [str(r) for r in RELEASES] == list(RELEASE_NAMES)
    assert repr(Release.R4_7) == "Release.R4_7" and Release.R4_7.major == 4
    assert f"Xen {Release.R4_8}" == "Xen 4.8" and f"{Release.R4_1:>4}" == " 4.1"
    assert LATEST_RELEASE is Release.R4_8
    assert copy.deepcopy(Release.R4_5) is Release.R4_5
    assert pickle.loads(pickle.dumps(Release.R4_5)) is Release.R4_5
    with pytest.raises(ValueError, match=r"unknown Xen version '4.2'; choose from 4.1, 4.5, 4.7, 4.8, 4.22"):
        Release.parse("4.2")


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
def test_the_config_version_is_the_machines_release(version):
    from xensim.xen import Machine, Release
    cfg = parse_config(f'hypervisor:\n  version: "{version}"\n')
    m = Machine.from_config(cfg, build_memory_map(cfg))
    assert m.release is Release.parse(version) and m.version == version
    assert resolved_config(cfg, build_memory_map(cfg))["hypervisor"]["version"] == version


def test_machine_refuses_an_unknown_version():
    from xensim.xen import Machine
    with pytest.raises(ValueError, match="unknown Xen version '5.0'"):
        Machine(MemoryMap([(0, 64 << 20)]), "none", version="5.0")


def test_design_choices_are_the_registry_in_registration_order():
    """config names designs through xensim.designs (no list of its own); the order is
    the registry's, the order its messages list them in."""
    assert DESIGNS == ("per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch",
                       "none")
    with pytest.raises(ConfigError) as e:
        parse_config("compare: [xen-5]\n", "c.yaml")
    assert str(e.value) == ("c.yaml:1: compare[0]: unknown design 'xen-5'; choose from: "
                            + ", ".join(DESIGNS))


def test_resolved_config_keeps_a_domains_vcpus(tmp_path):
    """A domain of several vCPUs keeps them in the resolved config (and so in a sweep
    point's id); one vCPU, the default, is not written."""
    cfg = parse_config("compare: [xen-4.1]\n"
                       "domains: [{name: a, memory: 8MiB, vcpus: 3}, {name: b, memory: 4MiB}]\n")
    data = resolved_config(cfg, build_memory_map(cfg))
    assert data["domains"] == [{"name": "a", "memory": 8 << 20, "vcpus": 3},
                               {"name": "b", "memory": 4 << 20}]
    dump_resolved(cfg, build_memory_map(cfg), tmp_path / "r.yaml")
    again = load_config(tmp_path / "r.yaml")
    assert again.domain_vcpus() == [3, 1]
