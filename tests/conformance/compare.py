#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare the conformance results of a real kernel and of libdmabuf.

  compare.py --recorded expected-6.12.txt --source expected-source.txt \
             --departures departures.txt --emulated EMU.txt \
             [--kernel FRESH.txt] [--kernel2 OTHER.txt] [--vm-note TEXT] \
             [--md docs/conformance.md]

Kernel result of a check: the fresh VM run (--kernel) if given, else the
recorded one; when the image could not run the check ("unavailable:" or the
line is absent) and expected-source.txt has it, the value read from the
kernel source. Verdict: "same", "departure" when departures.txt lists the
check with a matching libdmabuf value, else "BUG". Exit status 1 when a bug
remains, 0 otherwise.
"""
import argparse
import fnmatch
import sys


def read_results(path):
    """id -> value, in file order; '# key: value' header lines -> meta."""
    res, meta = {}, {}
    if not path:
        return res, meta
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("CONF-"):
                continue
            if line.startswith("#"):
                k, _, v = line[1:].strip().partition(":")
                if v:
                    meta[k.strip()] = v.strip()
                continue
            cid, _, val = line.partition(" ")
            res.setdefault(cid, val)
    return res, meta


def read_table(path, ncols):
    """Tab-separated rows, '#' comments; id -> list of the other columns."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != ncols:
                sys.exit(f"{path}:{n}: expected {ncols} tab-separated columns, got {len(cols)}")
            rows[cols[0]] = cols[1:]
    return rows


def md_cell(s):
    return s.replace("|", "\\|") if s else "—"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recorded", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--departures", required=True)
    ap.add_argument("--emulated", required=True)
    ap.add_argument("--known-bugs", help="open bugs: reported, not fatal; a new difference still fails")
    ap.add_argument("--kernel")
    ap.add_argument("--kernel2")
    ap.add_argument("--vm-note", default="")
    ap.add_argument("--md")
    ap.add_argument("--notes", help="markdown inserted after the summary")
    a = ap.parse_args()

    recorded, rmeta = read_results(a.recorded)
    fresh, fmeta = read_results(a.kernel)
    other, ometa = read_results(a.kernel2)
    emu, _ = read_results(a.emulated)
    source = read_table(a.source, 3)          # id -> [value, reference]
    departures = read_table(a.departures, 4)  # id -> [kernel, libdmabuf, reason]
    known = read_table(a.known_bugs, 4) if a.known_bugs else {}

    kernel = fresh if fresh else recorded
    kmeta = fmeta if fresh else rmeta

    ids = list(kernel)
    for cid in list(source) + list(emu):
        if cid not in ids:
            ids.append(cid)

    rows, bugs, counts = [], [], {"same": 0, "departure": 0, "BUG": 0, "known bug": 0}
    known_seen, stale = [], []
    from_source = 0
    for cid in ids:
        kval = kernel.get(cid)
        origin = "kernel"
        if (kval is None or kval.startswith("unavailable:")) and cid in source:
            kval, origin = source[cid][0], "source"
            from_source += 1
        evalue = emu.get(cid)
        kshow = kval if kval is not None else "(not run)"
        eshow = evalue if evalue is not None else "(not run)"
        if kval == evalue:
            verdict, note = "same", ""
        elif cid in departures and (
            fnmatch.fnmatchcase(kshow, departures[cid][0])
            and fnmatch.fnmatchcase(eshow, departures[cid][1])
        ):
            verdict, note = "departure", departures[cid][2]
        elif cid in known and (
            fnmatch.fnmatchcase(kshow, known[cid][0])
            and fnmatch.fnmatchcase(eshow, known[cid][1])
        ):
            verdict, note = "known bug", known[cid][2]
            known_seen.append((cid, kshow, eshow, note))
        else:
            verdict, note = "BUG", ""
            bugs.append((cid, kshow, eshow))
        counts[verdict] += 1
        if origin == "source":
            kshow += f" (source: {source[cid][1]})"
        rows.append((cid, kshow, eshow, verdict, note))

    drift = []
    if fresh and recorded:
        for cid in sorted(set(fresh) | set(recorded)):
            if fresh.get(cid) != recorded.get(cid):
                drift.append((cid, recorded.get(cid), fresh.get(cid)))
    vdrift = []
    if other:
        for cid in list(kernel) + [c for c in other if c not in kernel]:
            if kernel.get(cid) != other.get(cid):
                vdrift.append((cid, kernel.get(cid), other.get(cid)))

    # A listed bug that no longer shows must leave the list.
    for cid in known:
        if cid not in [k[0] for k in known_seen]:
            stale.append(cid)
    total = len(rows)
    print(f"conformance: {total} checks: {counts['same']} same, "
          f"{counts['departure']} documented departures, {counts['BUG']} bugs, "
          f"{counts['known bug']} known open bugs "
          f"({from_source} kernel results from source)")
    for cid, k, e in bugs:
        print(f"conformance: BUG {cid}: kernel {k}, libdmabuf {e}")
    for cid, r, f in drift:
        print(f"conformance: note: {cid}: recorded {r}, this kernel {f}")

    if a.md:
        out = []
        w = out.append
        w("# Conformance: a real kernel and libdmabuf, side by side")
        w("")
        w("Generated by `./run.sh conformance` (tests/conformance/compare.py); do not edit.")
        w("The same programs (`tests/conformance/*.c`, written only against the kernel's")
        w("uapi headers) run on a Debian kernel booted in QEMU (`tools/conformance-vm.sh`)")
        w("and on this machine under `dmabuf-run`. Each check prints `<id> <result>`.")
        w("")
        w(f"- Kernel: package `{kmeta.get('kernel package', '?')}`, release "
          f"`{kmeta.get('kernel release', '?')}`"
          + (" (this run)" if fresh else " (recorded in tests/conformance/"
             + a.recorded.split('/')[-1] + ")"))
        w(f"- Image config: `{kmeta.get('config', '?')}`")
        if a.vm_note:
            w(f"- VM: {a.vm_note}")
        w(f"- {total} checks: {counts['same']} same, {counts['departure']} documented "
          f"departures (docs/design.md, \"Departures from the kernel\"), "
          f"{counts['BUG']} bugs"
          + (f", {counts['known bug']} known open bugs (listed below)" if counts['known bug'] else "")
          + ".")
        w(f"- {from_source} kernel results come from the kernel source, because the image")
        w("  cannot run them (CONFIG_SW_SYNC is off in Debian's kernel); the file and")
        w("  function are named in the row.")
        w("")
        if a.notes:
            with open(a.notes, encoding="utf-8") as f:
                w(f.read().rstrip("\n"))
            w("")
        if known_seen:
            w("## Known open bugs (libdmabuf differs; to be fixed)")
            w("")
            w("| check | kernel | libdmabuf | what is wrong |")
            w("|---|---|---|---|")
            for cid, k, e, note in known_seen:
                w(f"| `{cid}` | {md_cell(k)} | {md_cell(e)} | {md_cell(note)} |")
            w("")
        if bugs:
            w("## Bugs (libdmabuf differs, not documented)")
            w("")
            w("| check | kernel | libdmabuf |")
            w("|---|---|---|")
            for cid, k, e in bugs:
                w(f"| `{cid}` | {md_cell(k)} | {md_cell(e)} |")
            w("")
        if drift:
            w("## This kernel against the recorded results")
            w("")
            w("| check | recorded | this run |")
            w("|---|---|---|")
            for cid, r, f in drift:
                w(f"| `{cid}` | {md_cell(r)} | {md_cell(f)} |")
            w("")
        if other:
            w(f"## Kernel versions: `{kmeta.get('kernel release', '?')}` against "
              f"`{ometa.get('kernel release', '?')}`")
            w("")
            w(f"Second image config: `{ometa.get('config', '?')}`.")
            w("")
            if vdrift:
                w("| check | " + kmeta.get('kernel release', 'first') + " | "
                  + ometa.get('kernel release', 'second') + " |")
                w("|---|---|---|")
                for cid, k, o in vdrift:
                    w(f"| `{cid}` | {md_cell(k)} | {md_cell(o)} |")
            else:
                w("No check differs.")
            w("")
        w("## Every check")
        w("")
        w("| check | kernel | libdmabuf | verdict |")
        w("|---|---|---|---|")
        for cid, k, e, v, note in rows:
            vv = v if v != "departure" else f"departure: {note}"
            w(f"| `{cid}` | {md_cell(k)} | {md_cell(e)} | {md_cell(vv)} |")
        with open(a.md, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")

    for cid in stale:
        print(f"conformance: {cid} is listed in {a.known_bugs} but no longer differs: remove it")
    for cid, k, e, note in known_seen:
        print(f"conformance: known bug {cid}: kernel {k}, libdmabuf {e}")
    return 1 if bugs or stale else 0


if __name__ == "__main__":
    sys.exit(main())
