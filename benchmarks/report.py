"""Turn pytest-benchmark JSON files, and those of ``benchmarks/throughput_cuda.py``, into the tables
of BENCHMARKS.md (one table per group, or per shape).

    python benchmarks/report.py benchmarks/results/*.json
"""

import json
import sys
from collections import defaultdict

REFERENCE_ROWS = ("copy", "backward_floor")  # bounds to compare with, not implementations


def table(path):
    data = json.load(open(path))
    if "rows" in data:
        return queued_table(path, data)
    groups = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"]].append(bench)
    lines = [f"From `{path}` ({data['machine_info'].get('cpu', {}).get('brand_raw', '')}, {data['datetime'][:10]}):", ""]
    for group, benches in sorted(groups.items()):
        if all("epoch_time_s" in b["extra_info"] for b in benches):
            lines += scaling_table(group, benches)
            continue
        copy = next((b for b in benches if b["extra_info"].get("implementation") == "copy"), None)
        lines += [f"**{group}**", "", "| implementation | median | vs fastest | GB/s | of copy roofline | peak memory |",
                  "|---|---|---|---|---|---|"]
        fastest = min(b["stats"]["median"] for b in benches if b["extra_info"].get("implementation") not in REFERENCE_ROWS)
        for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
            info, median = bench["extra_info"], bench["stats"]["median"]
            name = info.get("implementation") or bench["name"].split("[")[-1].rstrip("]")
            moved = info.get("bytes")
            if moved and info.get("mode") == "forward":
                moved //= 2  # the forward pass only reads the logits
            rate = f"{moved / median / 1e9:.0f}" if moved else ""
            roofline = f"{copy['stats']['median'] / median:.0%}" if copy and moved else ""
            peak = info.get("peak_memory_bytes")
            lines.append(f"| {name} | {median * 1e3:.3f} ms | {median / fastest:.2f}x | {rate} | {roofline} | "
                         f"{peak / 2**20:.0f} MiB |" if peak is not None else
                         f"| {name} | {median * 1e3:.3f} ms | {median / fastest:.2f}x | {rate} | {roofline} | |")
        lines.append("")
    return "\n".join(lines)


def scaling_table(group, benches):
    """Data-parallel runs (``test_seqgan_scaling.py``): the epoch time from each run's own log."""
    rows = sorted((b["extra_info"] for b in benches), key=lambda info: (info["processes"], -info["threads_per_process"]))
    lines = [f"**{group}**", "", "| processes × threads | batch per process | epoch (median) | sequences/s | vs the first row |",
             "|---|---|---|---|---|"]
    for info in rows:
        lines.append(f"| {info['processes']} × {info['threads_per_process']} | {info['batch_per_process']} | "
                     f"{info['epoch_time_s']:.2f} s | {info['sequences_per_s']:.1f} | "
                     f"{rows[0]['epoch_time_s'] / info['epoch_time_s']:.2f}x |")
    return lines + [""]


def queued_table(path, data):
    """A ``throughput_cuda.py`` file: per-call times of calls queued back to back."""
    shapes = defaultdict(list)
    for row in data["rows"]:
        shapes[(row["n"], row["v"], row["dtype"], row["device_name"])].append(row)
    lines = [f"From `{path}` (torch {data['torch']}, {data['calls']} calls queued, median of {data['repeats']}):", ""]
    for (n, v, dtype, device), rows in shapes.items():
        lines += [f"**policy loss with entropy vs Liger-Kernel N={n} V={v} {dtype} {device} forward_backward, calls queued**",
                  "", "| implementation | per call | GB/s | of copy roofline |", "|---|---|---|---|"]
        for row in sorted(rows, key=lambda r: r["ms"]):
            lines.append(f"| {row['implementation']} | {row['ms']:.3f} ms | {row['gb_per_s']:.0f} | {row['of_copy']:.0%} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n".join(table(path) for path in sys.argv[1:]))
