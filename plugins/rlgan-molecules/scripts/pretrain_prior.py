"""Pre-train the SMILES prior shipped with rlgan-molecules, by maximum likelihood on MOSES.

    python scripts/pretrain_prior.py --minutes 50 --out first.safetensors
    python scripts/pretrain_prior.py --init first.safetensors --lr 3e-4 --seed 1 --minutes 30 \
        --out rlgan_molecules/assets/prior.safetensors

Reads MOSES's 1,584,663 training SMILES from the installed ``molsets`` distribution, shuffles them
with ``--seed``, and trains a GRU policy with Adam (batches of ``--batch`` molecules, each batch cut
to its longest SMILES) for ``--minutes`` of wall time or ``--epochs`` epochs, whichever ends first,
the learning rate falling linearly to a tenth.  Every ``--every`` batches it prints the loss and the
validity of 500 samples and saves the policy to ``--out`` (so a stopped run leaves a usable prior);
the saved file's notes record these settings and how far training got.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from rlgan_molecules.model import SmilesPolicy, load_policy, save_policy  # noqa: E402
from rlgan_molecules.smiles import Vocabulary, canonical, quiet_rdkit, read_moses  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="continue from a saved policy (its sizes and vocabulary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    quiet_rdkit()

    smiles = read_moses("train")
    vocabulary = Vocabulary.build(smiles)
    length = max(len(vocabulary.encode(s)) for s in smiles)
    data = vocabulary.encode_batch(smiles, length).to(torch.uint8)
    lengths = (data != vocabulary.pad).sum(1)
    if args.init:
        policy = load_policy(args.init)
        if policy.vocabulary != vocabulary:
            raise SystemExit(f"{args.init} has another vocabulary than MOSES's")
    else:
        policy = SmilesPolicy(vocabulary, args.embedding, args.hidden, args.layers, max_length=100)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)
    batches_per_epoch = len(data) // args.batch
    total = int(args.epochs * batches_per_epoch)
    print(f"{len(smiles)} SMILES, {len(vocabulary)} tokens, longest {length}; "
          f"{sum(p.numel() for p in policy.parameters())} parameters", flush=True)

    started, seen, batch_index, losses = time.time(), 0, 0, []
    rng = torch.Generator().manual_seed(args.seed)
    order = torch.empty(0, dtype=torch.long)
    while batch_index < total and time.time() - started < args.minutes * 60:
        if len(order) < args.batch:
            order = torch.cat([order, torch.randperm(len(data), generator=rng)])
        rows, order = order[: args.batch], order[args.batch :]
        tokens = data[rows, : int(lengths[rows].max())].long()
        fraction = min(1.0, (time.time() - started) / (args.minutes * 60))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (1 - 0.9 * max(fraction, batch_index / total))
        loss = policy.policy_loss(tokens, torch.ones(len(tokens))) / len(tokens)  # mean NLL per molecule
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        seen += len(tokens)
        batch_index += 1
        if batch_index % args.every == 0:
            report(policy, args, losses, seen, batch_index / batches_per_epoch, time.time() - started)
            losses = []
    report(policy, args, losses, seen, batch_index / batches_per_epoch, time.time() - started)


def report(policy, args, losses, seen, epochs, seconds) -> None:
    policy.eval()
    samples = policy.smiles(policy.sample(500, seed=12345))
    policy.train()
    validity = sum(canonical(s) is not None for s in samples) / len(samples)
    loss = sum(losses) / max(1, len(losses))
    print(f"{seconds / 60:6.1f} min  {seen:9d} molecules ({epochs:.2f} epochs)  NLL {loss:.3f}  "
          f"validity {validity:.3f}", flush=True)
    save_policy(policy, args.out, data="MOSES train (molsets 0.3.1)", molecules_seen=seen, epochs=round(epochs, 3),
                minutes=round(seconds / 60, 1), continued_from=str(args.init or ''), batch=args.batch, lr=args.lr, seed=args.seed,
                command=" ".join(["python", "scripts/pretrain_prior.py"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
