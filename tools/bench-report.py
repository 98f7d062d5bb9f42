#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Aggregates the benchmark runs of `./run.sh bench` into one table.

usage: bench-report.py DIR [--write-doc FILE] [--commit TEXT]

DIR holds one output file per run, named BENCH.MODE.RUN.txt (MODE is
`pinned` or `unpinned`). Every `BENCH bench=.. name=.. value=.. unit=..
[target=..]` line of a run is one sample; for each figure and mode the table
shows min / median / max over the runs. Figures with a target (the issue's
bound: a ratio to a baseline, ns per DMA entry, fds or bytes per buffer) come
first with met / MISSED judged on the median; then the absolute figures the
ratios are made of.

--write-doc FILE replaces the text between the markers
`<!-- bench-figures:begin -->` and `<!-- bench-figures:end -->` in FILE (a
Markdown document) with the table, the machine (nproc, CPU model, kernel) and
the commit measured.
"""
import os
import platform
import re
import statistics
import sys
from collections import OrderedDict

LINE = re.compile(r"^BENCH bench=(\S+) name=(\S+) value=(\S+) unit=(\S+)(?: target=(\S+))?$")

# Absolute figures worth a row in the second table (bench, name prefix).
ABSOLUTE = [
    ("handoff", "raw_"), ("handoff", "wl_shm_4k"), ("handoff", "wl_shm_1m"),
    ("handoff", "libdmabuf_"), ("handoff", "steady_4k"), ("handoff", "steady_1m"),
    ("handoff", "connect_4k"), ("handoff", "connect_1m"), ("handoff", "buffers_per_s_"),
    ("handoff", "wl_shm_buffers_per_s_"),
    ("remote", "dispatch_remote_"), ("remote", "thread_remote_"),
    ("fence", "wake_socket_reply"), ("fence", "wake_eventfd_reply"),
    ("memory", "op_"), ("memory", "buffers"), ("importers", ""),
    ("map-1g", "system_iommu-64k_dma"), ("map-1g", "cma_iommu-64k_dma"),
]


def load(d):
    # figures[(bench, name)] = {"unit":, "target":, mode: [values]}
    figs = OrderedDict()
    for fn in sorted(os.listdir(d)):
        m = re.match(r"^(.+)\.(pinned|unpinned)\.(\d+)\.txt$", fn)
        if not m:
            continue
        mode = m.group(2)
        with open(os.path.join(d, fn), errors="replace") as f:
            for line in f:
                lm = LINE.match(line.strip())
                if not lm:
                    continue
                bench, name, value, unit, target = lm.groups()
                fig = figs.setdefault((bench, name), {"unit": unit, "target": None})
                if target is not None:
                    fig["target"] = float(target)
                fig.setdefault(mode, []).append(float(value))
    return figs


def fmt(v, unit):
    if unit == "ns" and abs(v) >= 1000:
        return "%.1f us" % (v / 1000)
    if unit == "x":
        return "%.2fx" % v
    if unit in ("count", "cores"):
        return "%.2f" % v
    return "%.0f %s" % (v, unit) if abs(v) >= 100 else "%.1f %s" % (v, unit)


def cell(vals, unit):
    if not vals:
        return "-"
    return "%s / %s / %s" % (fmt(min(vals), unit), fmt(statistics.median(vals), unit),
                             fmt(max(vals), unit))


def verdict(vals, target):
    if not vals:
        return "-"
    return "met" if statistics.median(vals) <= target else "MISSED"


def table(figs, runs):
    out = []
    out.append("| figure | target | pinned (min / median / max) | | unpinned (min / median / max) | |")
    out.append("|---|---|---|---|---|---|")
    for (bench, name), f in figs.items():
        if f["target"] is None:
            continue
        u = f["unit"]
        # 2.0x stays 2.0x, 1.05x is not rounded to 1.1x
        tx = "%.1f" % f["target"] if round(f["target"], 1) == f["target"] else "%g" % f["target"]
        tgt = ("<= %sx" % tx) if u == "x" else "<= %g %s" % (f["target"], u)
        out.append("| %s `%s` | %s | %s | %s | %s | %s |" % (
            bench, name, tgt, cell(f.get("pinned"), u), verdict(f.get("pinned"), f["target"]),
            cell(f.get("unpinned"), u), verdict(f.get("unpinned"), f["target"])))
    out.append("")
    out.append("Absolute figures the ratios are made of:")
    out.append("")
    out.append("| figure | pinned (min / median / max) | unpinned (min / median / max) |")
    out.append("|---|---|---|")
    for (bench, name), f in figs.items():
        if f["target"] is not None:
            continue
        if not any(bench == b and name.startswith(p) for b, p in ABSOLUTE):
            continue
        if name.endswith("_baseline") and bench != "remote":
            continue
        u = f["unit"]
        out.append("| %s `%s` | %s | %s |" % (bench, name, cell(f.get("pinned"), u),
                                            cell(f.get("unpinned"), u)))
    return out


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPUs (nproc), %s, Linux %s" % (len(os.sched_getaffinity(0)), cpu,
                                             platform.release())


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    d = args.pop(0)
    doc = commit = None
    while args:
        a = args.pop(0)
        if a == "--write-doc" and args:
            doc = args.pop(0)
        elif a == "--commit" and args:
            commit = args.pop(0)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    figs = load(d)
    if not figs:
        print("bench-report: no BENCH lines in %s" % d, file=sys.stderr)
        return 1
    runs = max(len(f.get(m, [])) for f in figs.values() for m in ("pinned", "unpinned"))
    head = ["Machine: %s. Runs: %d per mode (pinned: `taskset -c 0`, every process on "
            "CPU 0; unpinned: `BENCH_UNPINNED=1`, no mask)." % (machine(), runs)]
    if commit:
        head.append("Commit measured: %s." % commit)
    lines = []
    for h in head:
        lines += [h, ""]
    lines += table(figs, runs)
    print("\n".join(lines))
    if doc:
        with open(doc) as f:
            text = f.read()
        begin, end = "<!-- bench-figures:begin -->", "<!-- bench-figures:end -->"
        if begin not in text or end not in text:
            print("bench-report: %s has no %s ... %s markers" % (doc, begin, end),
                  file=sys.stderr)
            return 1
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        with open(doc, "w") as f:
            f.write(pre + begin + "\n" + "\n".join(lines) + "\n" + end + post)
        print("bench-report: wrote the figures into %s" % doc, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
