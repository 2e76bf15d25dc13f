"""Mean ± standard deviation of summary.json keys over runs (one row per key).

    python scripts/summary_table.py runs/ddpo-seed* --keys reward_mirror_symmetry_denoise reward_mirror_symmetry
"""

import argparse
import json
import statistics
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, each with a summary.json")
    parser.add_argument("--keys", nargs="+", required=True, help="summary keys to tabulate")
    args = parser.parse_args()
    summaries = [json.loads((Path(run) / "summary.json").read_text()) for run in args.runs]
    print(f"| {len(summaries)} runs | mean ± sd | per run |")
    print("|---|---|---|")
    for key in args.keys:
        values = [summary[key] for summary in summaries]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| `{key}` | {statistics.mean(values):.4g} ± {spread:.2g} | {', '.join(f'{v:.4g}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
