"""MOSES's metrics of a SMILES policy (by default the shipped prior), as MOSES defines them.

    pip install fcd_torch scipy
    python scripts/prior_metrics.py [--policy PATH] [-n 10000] [--seed 0]

Draws ``-n`` SMILES and prints, as JSON: validity (valid / drawn), unique@n (unique / valid),
novelty (unique valid SMILES not in MOSES's training set / unique valid), IntDiv1 (1 − mean
pairwise Tanimoto similarity of Morgan radius-2 1024-bit fingerprints, MOSES's setting) and
FCD/Test (Fréchet ChemNet Distance of the valid samples to MOSES's test set, with the test
statistics molsets ships, computed by ``fcd_torch`` as MOSES computes it).
"""

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from rlgan_molecules.model import PRIOR, load_policy  # noqa: E402
from rlgan_molecules.smiles import canonical, quiet_rdkit, read_moses, to_molecule  # noqa: E402


def internal_diversity_moses(smiles: list[str]) -> float:
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fingerprints = [generator.GetFingerprint(to_molecule(s)) for s in smiles]
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fingerprints)) for fp in fingerprints)
    return 1.0 - total / len(fingerprints) ** 2  # MOSES averages over all ordered pairs, self-pairs included


def fcd_to_test(smiles: list[str]) -> float:
    from fcd_torch import FCD

    stats = next(f for f in importlib.metadata.files("molsets") if str(f).endswith("dataset/data/test_stats.npz"))
    reference = np.load(stats.locate(), allow_pickle=True)["stats"].item()["FCD"]
    return float(FCD(device="cpu", n_jobs=1)(gen=smiles, pref=reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, default=PRIOR)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_rdkit()
    started = time.time()
    policy = load_policy(args.policy).eval()
    samples = []
    for chunk in range(0, args.n, 1000):
        samples += policy.smiles(policy.sample(min(1000, args.n - chunk), seed=args.seed * 1_000_003 + chunk))
    forms = [canonical(s) for s in samples]
    valid = [f for f in forms if f is not None]
    unique = set(valid)
    train = set(read_moses("train"))
    metrics = {
        "samples": args.n,
        "validity": len(valid) / len(forms),
        f"unique@{args.n}": len(unique) / len(valid),
        "novelty": len(unique - train) / len(unique),
        "intdiv1": internal_diversity_moses(valid),
        "fcd_test": fcd_to_test(valid),
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
