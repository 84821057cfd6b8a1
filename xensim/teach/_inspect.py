"""``xensim inspect``: look at one frame, one superpage or one domain after a run.

The run is the one ``xensim run`` makes of the config's workload on one design
(the first of its ``compare`` list, or ``--design``), stopped before the teardown
so that the guests are still there; ``--steps N`` stops after the first N
operations. Then:

``--mfn X``
    the frame's ``count_info`` and ``type_info`` field by field (PGC_allocated,
    PGC_state, the count; the PGT type, pinned, validated, the type count), its
    owner and GPFN, its superpage's entry as the design keeps it (a state and a
    count, two counts, a plain count, a page_info field, or nothing), every live
    page-table entry that maps it (table, index, level, flags), and who holds its
    references according to the auditor's recount, checked against the words;
``--superpage X`` (an MFN, or ``DOMAIN:INDEX`` for a domain's superpage INDEX)
    the superpage's entry, the state of its 512 frames (grouped), the PSE and
    4 KiB entries over it and the marks;
``--domain D`` (a name or a domid)
    the domain's page-table tree from its base pointer (tables per level, present
    entries, PSE and 4 KiB entries), pins, marks and page counts.

Formats: ``text`` (default), ``md`` and ``json`` (one object; see the ``to_dict``
keys below).
"""

from __future__ import annotations

import json

import numpy as np

from .._errors import ConfigError
from ..mem import (DOMID_INVALID, INVALID, PGT_l4_page_table, PGT_partial, PGT_type_mask,
                   SUPERPAGE_ORDER, SUPERPAGE_PAGES, decode_count_info, decode_type_info)
from ..xen import (_PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, CHILD_TYPES, GNTMAP_device_map,
                   GNTMAP_host_map, GNTMAP_readonly, GTF_readonly, LEVEL_TYPES, Machine,
                   is_xen_slot, pins, pte_mfn, vcpu_roots)
from ._decode import count_info_text, format_pte, pte_flags, row_groups, type_info_text, type_text
from ._preempt import (holds_general, partial_entry_text, partial_key, progress_fields,
                       progress_of)
from ..sim import CrashWatch
from ._replay import pick_design, replay

INSPECT_FORMATS = ("text", "md", "json")


# ==========================================================================
# Owners and superpage entries
# ==========================================================================

def _dom(m: Machine, domid: int | None) -> str:
    if domid is None or domid == DOMID_INVALID:
        return "none"
    d = m.domain(domid)
    return f"dom{domid} ({d.name})" if d is not None else f"dom{domid}"


def superpage_entry(m: Machine, mfn: int) -> dict:
    """The superpage's entry as the design keeps it: ``{"kind", "words": [...], "text"}``."""
    design = m.superpage
    first = mfn & ~(SUPERPAGE_PAGES - 1)
    spdx = m.mfn_to_pdx(first) >> SUPERPAGE_ORDER if m.mfn_valid(first) else None
    out = {"mfn": first, "spdx": spdx, "design": design.name, "words": []}
    if design.words_in is None:
        out["text"] = design.no_words_text
        return out
    words = design.words(first) if spdx is not None else None
    if words is None:
        out["text"] = "no entry (not a superpage with RAM)"
        return out
    texts = []
    for w, (name, v) in enumerate(words):
        entry = {"word": w, "name": name, "raw": v, "text": design.word_text(w, v)}
        entry.update(design.word_fields(w, v))
        out["words"].append(entry)
        texts.append(f"{entry['name']} {entry['text']}")
    out["text"] = ", ".join(texts)
    return out


# ==========================================================================
# Who maps a frame, who holds its references
# ==========================================================================

def entries_mapping(m: Machine, first: int, n: int = 1) -> list[dict]:
    """Every present entry of a live page table whose target overlaps frames
    [first, first+n): 4 KiB (L1), superpage (L2 PSE), or a lower table (L2-L4)."""
    out = []
    for page, (level, domid) in sorted(m.pt.live.items()):
        table = int(m.pdx_to_mfn(page))
        entries = m.mem.table(table)
        present = np.flatnonzero(entries & np.uint64(_PAGE_PRESENT))
        if not present.size:
            continue
        e = entries[present]
        target = ((e >> np.uint64(12)) & np.uint64((1 << 40) - 1)).astype(np.int64)
        pse = (e & np.uint64(_PAGE_PSE)) != 0 if level == 2 else np.zeros(e.size, bool)
        span = np.where(pse, SUPERPAGE_PAGES, 1)
        hit = (target < first + n) & (target + span > first)
        for i in np.flatnonzero(hit):
            val = int(e[i])
            kind = "superpage" if pse[i] else ("4k" if level == 1 else "table")
            row = {"table_mfn": table, "index": int(present[i]), "level": level, "domid": domid,
                   "entry": val, "mfn": pte_mfn(val), "flags": pte_flags(val), "kind": kind,
                   "rw": bool(val & _PAGE_RW)}
            if kind == "table":
                linear = m.pt.is_linear(level, val, table)
                row["child_type"] = type_text(LEVEL_TYPES[level] if linear else CHILD_TYPES[level])
                if linear:
                    row["linear"] = True
            out.append(row)
    return out


def partial_entries_mapping(m: Machine, mfn: int) -> list[dict]:
    """The entries of PGT_partial tables that hold a reference to ``mfn``, as the auditor
    counts them: those below ``nr_validated_ptes``, and the partial entry when it still
    holds its general reference (``partial_pte`` -1, or PTF_partial_set in ``partial_flags``;
    at ``partial_pte`` 1 it holds only the partial type count, the lower table's own)."""
    out = []
    for page, (level, domid) in sorted(m.pt.partial.items()):
        table = int(m.pdx_to_mfn(page))
        nr, partial = progress_of(m, page)
        entries = m.mem.table(table)
        upto = nr + 1 if holds_general(m, partial) else nr
        for i in np.flatnonzero(entries[:upto] & np.uint64(_PAGE_PRESENT)).tolist():
            val = entries.item(i)
            if pte_mfn(val) != mfn or is_xen_slot(level, i) or mfn == table:
                continue
            if level == 2 and val & _PAGE_PSE:
                continue                  # a superpage: the design's to count
            row = {"table_mfn": table, "index": i, "level": level, "domid": domid,
                   "entry": val, "mfn": mfn, "flags": pte_flags(val), "kind": "table",
                   "rw": bool(val & _PAGE_RW), "partial_table": True,
                   "child_type": type_text(CHILD_TYPES[level])}
            if i == nr:
                row["general_only"] = True            # partial_pte -1, PTF_partial_set
                row["partial_field"] = f"{partial_key(m)} {partial}"
            out.append(row)
    return out


def validation_of(m: Machine, page: int) -> dict:
    """A frame's validation state: PGT_partial, ``nr_validated_ptes`` and the partial entry
    (``partial_pte``), as its page_info keeps them."""
    ti = m.frame_table.type_info(page)
    return {"partial": bool(ti & PGT_partial), **progress_fields(m, page)}


def validation_text(v: dict, level: int | None) -> str:
    """``PGT_partial: nr_validated_ptes 200 (...), partial_pte 0`` (or ``partial_flags``)."""
    flags = "partial_flags" in v
    nr, partial = v["nr_validated_ptes"], v["partial_flags" if flags else "partial_pte"]
    held = ("entry 0 holds its references" if nr == 1 else
            f"entries 0..{nr - 1} hold their references" if nr else
            "no entry below it holds a reference")
    below = f"L{level - 1}" if level else "table"
    return (f"PGT_partial (a preempted validation or devalidation): nr_validated_ptes {nr} "
            f"({held}), {partial_entry_text(level or 0, nr, partial, below, flags)}")


def _entry_text(r: dict) -> str:
    what = {"superpage": "2 MiB superpage", "4k": "4 KiB page",
            "table": f"an {r.get('child_type', '?')} table"}[r["kind"]]
    if r.get("partial_table"):
        what += (f"; the partial entry of a PGT_partial table: {r.get('partial_field')}"
                 if r.get("general_only") else
                 ", below nr_validated_ptes of a PGT_partial table")
    return (f"L{r['level']} table mfn {r['table_mfn']:#x} [{r['index']:#x}] (dom{r['domid']}): "
            f"{format_pte(r['entry'])} ({what})")


def held_by(m: Machine, mfn: int, mapped: list[dict]) -> dict:
    """The references ``mfn`` must hold, by holder, recounted as the auditor does."""
    from ..xen import Expected
    rows = []
    owner = m.frame_table.owner(m.mfn_to_page(mfn)) if m.mfn_valid(mfn) else DOMID_INVALID
    d = m.domain(owner) if owner != DOMID_INVALID else None
    if d is not None and mfn in d.allocated:
        rows.append({"what": "PGC_allocated (the owner's own reference)", "general": 1, "type": None})
    for r in mapped:
        if r["kind"] == "4k":
            rows.append({"what": f"L1 entry of table mfn {r['table_mfn']:#x} [{r['index']:#x}] "
                                 f"{'RW' if r['rw'] else 'RO'}", "general": 1,
                         "type": "writable" if r["rw"] else None})
        elif r["kind"] == "table":
            partial = " (PGT_partial table)" if r.get("partial_table") else ""
            rows.append({"what": f"L{r['level']} entry of table mfn {r['table_mfn']:#x} "
                                 f"[{r['index']:#x}]{partial}", "general": 1,
                         "type": None if r.get("general_only") else r["child_type"]})
    page = m.mfn_to_page(mfn) if m.mfn_valid(mfn) else None
    if page in m.pt.partial:
        level = m.pt.partial[page][0]
        rows.append({"what": "PGT_partial: its type count kept at 1, and get_page_light's "
                             "general reference", "general": 1,
                     "type": type_text(LEVEL_TYPES[level])})
    for dom in m.domains.values():
        for page, t in dom.pinned.items():
            if int(m.pdx_to_mfn(page)) == mfn:
                rows.append({"what": f"pin by dom{dom.domid}", "general": 1, "type": type_text(t)})
        holders = [(v, key) for v in dom.vcpus for _, key in v.roots()]
        for (root, what), (v, key) in zip(vcpu_roots(dom), holders):
            if root != mfn:
                continue
            if key != "old_guest_table":
                rows.append({"what": what, "general": 1, "type": type_text(PGT_l4_page_table)})
                continue
            # a put to finish: its general reference, and its typed one unless that put was
            # preempted (the type count is then the partial table's own)
            partial = v.old_guest_table_partial if m.partial_flags else page in m.pt.partial
            ti = m.frame_table.type_info(page)
            rows.append({"what": what, "general": 1,
                         "type": None if partial else type_text(ti & PGT_type_mask)})
    for g in grants_of(m, mfn):                    # a device mapping's references are the grant's
        for kind, n in (("devw", g["pins"]["devw"]), ("devr", g["pins"]["devr"])):
            if n:
                rows.append({"what": f"dom{g['granter']}'s grant {g['ref']}: device mapping "
                                     f"by dom{g['grantee']} ({kind} {n})", "general": n,
                             "type": "writable" if kind == "devw" else None, "types": n})
    # what the superpage design holds: its runs of 512 references (from the auditor's view)
    exp = Expected()
    m.pt.expect(m, exp)
    for r_mfn, r_n, domid, r_type in exp.runs:
        if r_mfn <= mfn < r_mfn + r_n:
            rows.append({"what": f"superpage mfn {r_mfn:#x}: the {m.superpage.name} design's "
                                 f"{r_n} frame references", "general": 1,
                         "type": type_text(r_type) if r_type is not None else None})
    count = sum(r["general"] for r in rows)
    types = [r["type"] for r in rows if r["type"] for _ in range(r.get("types", 1))]
    exp_type = types[0] if types and len(set(types)) == 1 else ("conflict" if types else None)
    ci = m.frame_table.count_info(m.mfn_to_page(mfn)) if m.mfn_valid(mfn) else 0
    ti = m.frame_table.type_info(m.mfn_to_page(mfn)) if m.mfn_valid(mfn) else 0
    a_ci, a_ti = decode_count_info(ci), decode_type_info(ti)
    matches = a_ci["count"] == count and a_ti["count"] == len(types) and (
        not types or a_ti["type"] == exp_type)
    return {"holders": rows, "count": count, "type": exp_type, "type_count": len(types),
            "matches": bool(matches)}


# ==========================================================================
# The three views
# ==========================================================================

def grants_of(m: Machine, mfn: int) -> list[dict]:
    """Every grant of frame ``mfn``: the granter's entry (ref, grantee, read-only), its pins
    while mapped, and the grantee's maptrack handles of it (flags as host / device, ro / rw)."""
    out = []
    for granter, gt in m.gnttab.tables.items():
        for ref, (flags, grantee, frame) in gt.shared.items():
            act = gt.active.get(ref)
            if (act[2] if act else frame) != mfn:
                continue
            hw, hr, dw, dr = pins(act[0]) if act else (0, 0, 0, 0)
            lgt = m.gnttab.table(act[1] if act else grantee)
            handles = [] if lgt is None else [
                {"handle": h, "host": bool(f & GNTMAP_host_map), "device": bool(f & GNTMAP_device_map),
                 "rw": not f & GNTMAP_readonly}
                for h, (f, dom, r) in sorted(lgt.maptrack.items()) if (dom, r) == (granter, ref)]
            out.append({"granter": granter, "ref": ref, "grantee": act[1] if act else grantee,
                        "readonly": bool(flags & GTF_readonly),
                        "pins": {"hstw": hw, "hstr": hr, "devw": dw, "devr": dr},
                        "handles": handles})
    return out


def _grant_text(g: dict) -> str:
    p = g["pins"]
    maps = ", ".join(f"handle {h['handle']} " + "+".join(k for k in ("host", "device") if h[k])
                     + (" rw" if h["rw"] else " ro") for h in g["handles"]) or "not mapped"
    return (f"dom{g['granter']}'s grant {g['ref']} to dom{g['grantee']}"
            f"{' (read-only)' if g['readonly'] else ''}: pins hstw {p['hstw']} hstr {p['hstr']} "
            f"devw {p['devw']} devr {p['devr']}; {maps}")


def hole_of(m: Machine, mfn: int) -> tuple[int, int] | None:
    """The hole of the memory map (first, end MFN) that ``mfn`` is in, or None."""
    for first, end in m.memmap.holes:
        if first <= mfn < end:
            return first, end
    return None


def inspect_mfn(m: Machine, mfn: int) -> dict:
    out = {"view": "mfn", "mfn": mfn, "valid": m.mfn_valid(mfn)}
    hole = hole_of(m, mfn)
    if hole is not None:
        out["hole"] = list(hole)
    if not out["valid"]:
        out["note"] = (f"not RAM: in the hole mfn {hole[0]:#x}..{hole[1]:#x} of the memory map, "
                       "with no page_info (its PDX group has no RAM)" if hole else
                       "not a valid MFN (no page_info)")
        return out
    page = m.mfn_to_page(mfn)
    ft = m.frame_table
    ci, ti, owner = ft.count_info(page), ft.type_info(page), ft.owner(page)
    gpfn = m.m2p.get(mfn) if mfn < m.max_page else INVALID
    out.update({
        "pdx": page, "ram": ft.is_ram_pdx(page),
        "owner": None if owner == DOMID_INVALID else owner,
        "owner_name": _dom(m, owner),
        "gpfn": None if gpfn == INVALID else int(gpfn),
        "count_info": dict(decode_count_info(ci), raw=ci, text=count_info_text(ci)),
        "type_info": dict(decode_type_info(ti), raw=ti, text=type_info_text(ti)),
        "validation": validation_of(m, page),
    })
    sp = superpage_entry(m, mfn)
    sp["frame"] = mfn - sp["mfn"]
    sp["marked_by"] = [d.domid for d in m.domains.values() if sp["mfn"] in d.marked]
    out["superpage"] = sp
    mapped = entries_mapping(m, mfn) + partial_entries_mapping(m, mfn)
    out["mapped_by"] = mapped
    out["grants"] = grants_of(m, mfn)
    out["held_by"] = held_by(m, mfn, mapped)
    return out


def inspect_superpage(m: Machine, mfn: int) -> dict:
    first = mfn & ~(SUPERPAGE_PAGES - 1)
    out = {"view": "superpage", "mfn": first, "last_mfn": first + SUPERPAGE_PAGES - 1}
    if not (m.mfn_valid(first) and m.mfn_valid(first + SUPERPAGE_PAGES - 1)):
        out["note"] = "not a superpage of valid MFNs"
        return out
    page = m.mfn_to_page(first)
    ci, ti, owner = m.frame_table.read_slices(page, SUPERPAGE_PAGES)
    owners = sorted({int(o) for o in owner})
    out["owners"] = [None if o == DOMID_INVALID else o for o in owners]
    out["owner_names"] = [_dom(m, o) for o in owners]
    gp = [m.m2p.get(first), m.m2p.get(first + SUPERPAGE_PAGES - 1)]
    out["gpfns"] = None if INVALID in gp else [int(g) for g in gp]
    out["entry"] = superpage_entry(m, first)
    out["marked_by"] = [d.domid for d in m.domains.values() if first in d.marked]
    # the 512 frames' words, grouped
    rows = np.stack([ci, ti], axis=1)
    groups = []
    for row, at in row_groups(rows):
        frames = at.tolist()
        c, t = int(row[0]), int(row[1])
        groups.append({"frames": len(frames), "first_frames": frames[:8],
                       "count_info": count_info_text(c), "type_info": type_info_text(t),
                       "count_info_raw": c, "type_info_raw": t})
    out["frames"] = groups
    mapped = entries_mapping(m, first, SUPERPAGE_PAGES)
    out["pse_entries"] = [r for r in mapped if r["kind"] == "superpage"]
    out["small_entries"] = [r for r in mapped if r["kind"] != "superpage"]
    return out


def inspect_domain(m: Machine, domid: int, max_tree_lines: int = 64) -> dict:
    d = m.domain(domid)
    out = {"view": "domain", "domid": domid, "name": d.name, "max_pages": d.max_pages,
           "tot_pages": d.tot_pages, "allocated_pages": len(d.allocated),
           "baseptr": d.baseptr,
           "vcpus": [{"vcpu": v.vcpu_id, "guest_table": v.guest_table,
                      "guest_table_user": v.guest_table_user,
                      "old_guest_table": v.old_guest_table} for v in d.vcpus],
           "pins": [{"mfn": int(m.pdx_to_mfn(p)), "type": type_text(t)} for p, t in sorted(d.pinned.items())],
           "marks": sorted(d.marked), "dying": d.is_dying,
           "partial": [{"mfn": int(m.pdx_to_mfn(p)), "level": lv, **progress_fields(m, p)}
                       for p, (lv, owner) in sorted(m.pt.partial.items()) if owner == domid]}
    levels = {lv: {"tables": 0, "present": 0, "pse": 0, "pse_rw": 0, "small": 0, "small_rw": 0,
                   "to_tables": 0} for lv in (4, 3, 2, 1)}
    for page, (lv, owner) in m.pt.live.items():
        if owner != domid:
            continue
        e = m.mem.table(int(m.pdx_to_mfn(page)))
        p = e[(e & np.uint64(_PAGE_PRESENT)) != 0]
        s = levels[lv]
        s["tables"] += 1
        s["present"] += int(p.size)
        rw = (p & np.uint64(_PAGE_RW)) != 0
        if lv == 2:
            pse = (p & np.uint64(_PAGE_PSE)) != 0
            s["pse"] += int(pse.sum())
            s["pse_rw"] += int((pse & rw).sum())
            s["to_tables"] += int((~pse).sum())
        elif lv == 1:
            s["small"] += int(p.size)
            s["small_rw"] += int(rw.sum())
        else:
            s["to_tables"] += int(p.size)
    out["levels"] = {f"L{lv}": s for lv, s in levels.items()}
    tree: list[dict] = []

    def walk(mfn: int, level: int, index: int | None, depth: int) -> None:
        e = m.mem.table(mfn)
        idx = np.flatnonzero(e & np.uint64(_PAGE_PRESENT))
        node = {"depth": depth, "level": level, "mfn": mfn, "index": index,
                "present": int(idx.size)}
        if level == 2:
            pse = (e[idx] & np.uint64(_PAGE_PSE)) != 0
            node["pse"] = int(pse.sum())
            node["pse_rw"] = int((pse & ((e[idx] & np.uint64(_PAGE_RW)) != 0)).sum())
        if level == 1:
            node["rw"] = int(((e[idx] & np.uint64(_PAGE_RW)) != 0).sum())
        tree.append(node)
        if level == 1:
            return
        for i in idx:
            v = int(e[int(i)])
            if level == 2 and v & _PAGE_PSE or m.pt.is_linear(level, v, mfn):
                continue                  # a superpage, or a linear entry (no subtree)
            walk(pte_mfn(v), level - 1, int(i), depth + 1)

    if d.baseptr is not None:
        walk(d.baseptr, 4, None, 0)
    out["tree"] = tree[:max_tree_lines]
    out["tree_truncated"] = max(0, len(tree) - max_tree_lines)
    return out


# ==========================================================================
# Rendering
# ==========================================================================

def _mfn_lines(r: dict) -> list[tuple[str, list[str]]]:
    """(section title, lines) of an mfn report."""
    if not r["valid"]:
        return [(f"mfn {r['mfn']:#x}", [r["note"]])]
    if r["ram"]:
        what = "RAM"
    elif "hole" in r:
        what = (f"not RAM: in the hole mfn {r['hole'][0]:#x}..{r['hole'][1]:#x} of the memory map; "
                "its page_info (its PDX group has RAM) is never used: all zero, which decodes "
                "as below")
    else:
        what = "not RAM (reserved in the memory map; its page_info is never used)"
    head = [f"pdx {r['pdx']:#x}, {what}",
            f"owner: {r['owner_name']}" + (f", gpfn {r['gpfn']:#x}" if r["gpfn"] is not None else ""),
            f"count_info: {r['count_info']['text']}",
            f"type_info: {r['type_info']['text']}",
            *([f"validation: {validation_text(r['validation'], _level(r['type_info']['type']))}"]
              if r["validation"]["partial"] else []),
            f"raw: count_info {r['count_info']['raw']:#018x}, type_info {r['type_info']['raw']:#018x}"]
    sp = r["superpage"]
    marked = f", marked by {', '.join(f'dom{x}' for x in sp['marked_by'])}" if sp["marked_by"] else ""
    head.append(f"superpage: mfn {sp['mfn']:#x}..{sp['mfn'] + SUPERPAGE_PAGES - 1:#x}, frame "
                f"{sp['frame']} of 512; {sp['design']} {sp['text']}{marked}")
    mapped = [_entry_text(x) for x in r["mapped_by"]] or ["no live page-table entry maps it"]
    h = r["held_by"]
    held = [f"{x['what']}: 1 general" + (f" + 1 {x['type']}" if x["type"] else "")
            for x in h["holders"]]
    held.append(f"expected: count {h['count']}, type {h['type'] or 'none'}/{h['type_count']} "
                f"({'matches the frame table' if h['matches'] else 'DIFFERS from the frame table'})")
    grants = [("grants", [_grant_text(g) for g in r["grants"]])] if r.get("grants") else []
    return [(f"mfn {r['mfn']:#x}", head), ("mapped by", mapped), *grants,
            ("references held (recounted as the auditor does)", held)]


def _superpage_lines(r: dict) -> list[tuple[str, list[str]]]:
    title = f"superpage mfn {r['mfn']:#x}..{r['last_mfn']:#x}"
    if "note" in r:
        return [(title, [r["note"]])]
    e = r["entry"]
    head = [f"spdx {e['spdx']:#x}, owner {', '.join(r['owner_names'])}"
            + (f", gpfn {r['gpfns'][0]:#x}..{r['gpfns'][1]:#x}" if r["gpfns"] else ""),
            f"{e['design']}: {e['text']}",
            "marked by " + (", ".join(f"dom{x}" for x in r["marked_by"]) or "nobody")]
    frames = []
    for g in r["frames"]:
        which = "all 512 frames" if g["frames"] == 512 else (
            f"{g['frames']} frames" + (f" (frames {', '.join(map(str, g['first_frames']))}"
                                       + (", ..." if g["frames"] > 8 else "") + ")"
                                       if g["frames"] < 512 else ""))
        frames.append(f"{which}: count_info {g['count_info']}; type_info {g['type_info']}")
    pse = [_entry_text(x) for x in r["pse_entries"]] or ["none"]
    small = [_entry_text(x) for x in r["small_entries"][:16]]
    if len(r["small_entries"]) > 16:
        small.append(f"... {len(r['small_entries']) - 16} more")
    return [(title, head), ("frames", frames), ("PSE entries (2 MiB mappings)", pse),
            ("4 KiB entries over its frames", small or ["none"])]


def _domain_lines(r: dict) -> list[tuple[str, list[str]]]:
    head = [f"max_pages {r['max_pages']}, tot_pages {r['tot_pages']}, "
            f"allocated {r['allocated_pages']}" + (", dying" if r["dying"] else ""),
            "base pointer: " + (f"L4 mfn {r['baseptr']:#x}" if r["baseptr"] is not None else "none"),
            *[f"v{v['vcpu']}: " + ", ".join(f"{k} {v[k]:#x}" for k in
                                            ("guest_table", "guest_table_user", "old_guest_table")
                                            if v[k] is not None)
              for v in r.get("vcpus", ()) if len(r["vcpus"]) > 1 or v["guest_table_user"]
              is not None or v["old_guest_table"] is not None],
            *([("PGT_partial tables: " + ", ".join(
                f"L{t['level']} mfn {t['mfn']:#x} (nr_validated_ptes {t['nr_validated_ptes']}, "
                + next(f"{k} {t[k]}" for k in ("partial_pte", "partial_flags") if k in t) + ")"
                for t in r["partial"]))] if r.get("partial")
              else []),
            "pins: " + (", ".join(f"{p['type']} mfn {p['mfn']:#x}" for p in r["pins"]) or "none"),
            "marks: " + (", ".join(f"mfn {x:#x}" for x in r["marks"]) or "none")]
    lv = []
    for name, s in r["levels"].items():
        parts = [f"{s['tables']} table{'s' if s['tables'] != 1 else ''}",
                 f"{s['present']} present entr{'y' if s['present'] == 1 else 'ies'}"]
        if name == "L2":
            parts.append(f"{s['pse']} PSE ({s['pse_rw']} RW, {s['pse'] - s['pse_rw']} RO)")
            parts.append(f"{s['to_tables']} to L1 table{'s' * (s['to_tables'] != 1)}")
        elif name == "L1":
            parts.append(f"{s['small']} 4 KiB ({s['small_rw']} RW, {s['small'] - s['small_rw']} RO)")
        lv.append(f"{name}: " + ", ".join(parts))
    tree = []
    for t in r["tree"]:
        at = "" if t["index"] is None else f"[{t['index']:#x}] "
        what = f"{t['present']} present"
        if t["level"] == 2:
            what += f", {t['pse']} PSE ({t['pse_rw']} RW)"
        if t["level"] == 1:
            what += f" 4 KiB ({t['rw']} RW)"
        tree.append("  " * t["depth"] + f"{at}L{t['level']} mfn {t['mfn']:#x}: {what}")
    if r["tree_truncated"]:
        tree.append(f"... {r['tree_truncated']} more tables")
    return [(f"dom{r['domid']} {r['name']}", head), ("page tables per level", lv),
            ("tree from the base pointer", tree or ["no base pointer"])]


def _level(type_name: str) -> int | None:
    """``l2`` -> 2; None for a type that is not a page table's."""
    return int(type_name[1]) if len(type_name) == 2 and type_name[0] == "l" else None


_SECTIONS = {"mfn": _mfn_lines, "superpage": _superpage_lines, "domain": _domain_lines}


def render_inspection(report: dict, fmt: str = "text") -> str:
    """An inspection report as text, Markdown or JSON."""
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=False, default=int) + "\n"
    sections = _SECTIONS[report["view"]](report)
    if report.get("in_op") is not None:
        when = (f"after hypercall {report['calls_run']} of the workload, inside operation "
                f"{report['in_op'] + 1} of {report['ops_total']}")
    elif "calls" in report:
        when = (f"after all {report['ops_total']} operations ({report['calls_run']} hypercalls, "
                f"fewer than --calls {report['calls']})")
    else:
        when = f"after {report['ops_run']} of {report['ops_total']} operations"
    intro = (f"{when} of {report['config']} on {report['design']}"
             + (f", {report['release']}" if report.get("release") else ""))
    if report.get("steps_clamped"):
        intro += (f" (--steps {report['steps_clamped']} is more than the workload's "
                  f"{report['ops_total']}: clamped)")
    if fmt == "md":
        out = [f"# xensim inspect: {sections[0][0]}", "", f"_{intro}_", ""]
        for i, (title, lines) in enumerate(sections):
            if i:
                out += [f"## {title}", ""]
            out += [f"- `{ln}`" for ln in lines] + [""]
        return "\n".join(out)
    out = [intro]
    for i, (title, lines) in enumerate(sections):
        if i == 0:
            out.append(title)
            out += [f"  {ln}" for ln in lines]
        else:
            out.append(f"{title}:")
            out += [f"  {ln}" for ln in lines]
    return "\n".join(out) + "\n"


# ==========================================================================
# One inspection
# ==========================================================================

def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ConfigError(None, what, f"not a number: {text!r} (use 0x200 or 512)") from None


def resolve_superpage(m: Machine, kernels, text: str) -> int:
    """``0x200`` (an MFN) or ``web:1`` (superpage 1 of domain web) -> the first MFN."""
    if ":" in text:
        name, _, idx = text.rpartition(":")
        k = kernels.get(name)
        if k is None:
            raise ConfigError(None, "--superpage", f"no domain named {name!r}; the domains are: "
                                                   f"{', '.join(kernels)}")
        i = _int(idx, "--superpage")
        try:
            return k.mfn(i * SUPERPAGE_PAGES)
        except Exception:                                   # noqa: BLE001  a GuestError
            raise ConfigError(None, "--superpage", f"superpage {i} of {name} is not populated") from None
    return _int(text, "--superpage") & ~(SUPERPAGE_PAGES - 1)


def resolve_domain(m: Machine, kernels, text: str) -> int:
    if text in kernels:
        return kernels[text].domid
    try:
        domid = int(text.removeprefix("dom"), 0)
    except ValueError:
        domid = None
    if domid is None or m.domain(domid) is None:
        raise ConfigError(None, "--domain", f"no domain {text!r}; the domains are: "
                                            + ", ".join(f"{n} (dom{k.domid})" for n, k in kernels.items()))
    return domid


def inspect(cfg, memmap, *, mfn: str | None = None, superpage: str | None = None,
            domain: str | None = None, design: str | None = None,
            steps: int | None = None, calls: int | None = None) -> dict:
    """Run the workload (or its first ``steps`` operations, or up to its ``calls``-th
    hypercall, inside an operation: :func:`run_to_call`) and inspect one thing.

    A number that is no frame of the machine (``--mfn -1``, past ``max_pfn``) is a
    :class:`ConfigError`, raised before the run; a run that raises, a
    :class:`~xensim.sim.DesignCrashed`."""
    mfn_n = _frame(mfn, "--mfn", memmap) if mfn is not None else None
    if superpage is not None and ":" not in superpage:
        _frame(superpage, "--superpage", memmap)
    watch = CrashWatch(pick_design(cfg, design))
    stopped = None
    with watch:
        session = replay(cfg, memmap, design)
        if calls is None:
            for _ in session.steps(steps, watch.before):
                pass
        else:
            stopped = run_to_call(session, calls, watch.before)
    n = session.ops_done
    m, kernels = session.machine, session.kernels
    if mfn_n is not None:
        report = inspect_mfn(m, mfn_n)
    elif superpage is not None:
        report = inspect_superpage(m, resolve_superpage(m, kernels, superpage))
    else:
        report = inspect_domain(m, resolve_domain(m, kernels, domain))
    report.update({"config": str(cfg.source or "<config>"), "design": session.design,
                   "release": m.release_label,
                   "ops_run": n, "ops_total": session.workload.total})
    if steps is not None and steps > session.workload.total:
        report["steps_clamped"] = steps
    if calls is not None:
        report["calls"] = calls
        report["calls_run"] = stopped[0]
        report["in_op"] = stopped[1]
    return report


def run_to_call(session, calls: int, before=None) -> tuple[int, int | None, object]:
    """Run the session's workload until its ``calls``-th hypercall has returned (a
    continuation counts as a call: the machine is then as Xen leaves it between a preempted
    call and the guest's next entry) -> (hypercalls run, the 0-based operation it stopped
    inside, or None if the workload ended first, the greenlet in which the rest waits).
    The operation's rest is never run: keep the greenlet while reading the machine (dropped,
    it unwinds without touching the machine: the call it stopped after has returned)."""
    import greenlet
    m = session.machine
    seen = 0
    op = [None]
    main = greenlet.getcurrent()

    def on_leave(caller, number, args, rc) -> None:
        nonlocal seen
        seen += 1
        if seen == calls:
            main.switch(op[0])

    def in_op(i, o) -> None:
        op[0] = i
        if before is not None:
            before(i, o)

    def run() -> None:
        for _ in session.steps(None, in_op):
            pass

    sub = m.events.subscribe("hypercall_leave", on_leave)
    try:
        runner = greenlet.greenlet(run)
        at = runner.switch()
    finally:
        m.events.unsubscribe(sub)
    return seen, (at if seen == calls else None), runner


def _frame(text: str, what: str, memmap) -> int:
    """An MFN option: a number from 0 to the machine's last frame (``max_pfn`` - 1)."""
    v = _int(text, what)
    if v < 0:
        raise ConfigError(None, what, f"must be 0 or more, got {text}")
    if v >= memmap.max_pfn:
        raise ConfigError(None, what, f"{text} is past the machine's last frame "
                                      f"{memmap.max_pfn - 1:#x} (max_pfn {memmap.max_pfn:#x})")
    return v
