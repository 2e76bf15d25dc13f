"""The NLL table of docs/results.md from the run folders of seqgan_oracle.toml (one per seed).

    python scripts/seqgan_table.py runs/seqgan-seed3 runs/seqgan-seed4 runs/seqgan-seed5

Reads each folder's summary.json: the random policy is the generator before training
(``*_initial``), MLE the end of pre-training (``*_mle``), SeqGAN the end of the run.
"""

import json
import statistics
import sys
from pathlib import Path

ROWS = (("random policy (untrained generator)", "_initial"), ("MLE (end of pre-training)", "_mle"), ("SeqGAN", ""))


def main(folders: list[str]) -> None:
    summaries = [json.loads((Path(folder) / "summary.json").read_text()) for folder in folders]
    seeds = ", ".join(str(s["config"]["run"]["seed"]) for s in summaries)
    print(f"| {len(summaries)} seeds ({seeds}) | NLL_oracle | NLL_test |")
    print("|---|---|---|")
    for label, suffix in ROWS:
        cells = []
        for metric in ("nll_oracle", "nll_test"):
            values = [s[metric + suffix] for s in summaries]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {label} | {' | '.join(cells)} |")
    gains = [s["nll_oracle_mle"] - s["nll_oracle"] for s in summaries]
    times = ", ".join(f"{s['wall_time_s']:.0f} s" for s in summaries)
    print(f"\nSeqGAN below MLE, per seed: {', '.join(f'{g:.3f}' for g in gains)} "
          f"(mean {statistics.mean(gains):.3f}); wall time per run: {times} on {summaries[0]['device']}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
