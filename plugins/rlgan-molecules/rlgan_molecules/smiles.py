"""SMILES as token sequences: the tokenizer, its vocabulary, canonical forms, and MOSES's SMILES.

A SMILES is split into atoms and bonds by one regular expression: bracket atoms (``[nH]``,
``[C@@H]``, ``[N+]``) are one token each, so are ``Cl`` and ``Br`` and two-digit ring closures
(``%10``); every other character is a token of its own.  A :class:`Vocabulary` maps tokens to
ids, with three special ids (padding, start, end); it is saved with every model trained on it.
Generated sequences are decoded up to their end token; what RDKit cannot parse is invalid, never
an error.
"""

import gzip
import importlib.metadata
import re
from functools import lru_cache
from pathlib import Path

import torch

TOKEN_PATTERN = re.compile(r"(\[[^\]]+\]|Br|Cl|%\d{2}|.)")
PAD, START, END = "<pad>", "<start>", "<end>"


def tokenize(smiles: str) -> list[str]:
    """The tokens of ``smiles``, which joined give it back."""
    return TOKEN_PATTERN.findall(smiles)


class Vocabulary:
    """Token ids: ``<pad>`` is 0, ``<start>`` 1, ``<end>`` 2, then the tokens in the order given."""

    def __init__(self, tokens: list[str]):
        specials = [PAD, START, END]
        self.tokens = specials + [t for t in tokens if t not in specials]
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("a vocabulary's tokens must be distinct")
        self.pad, self.start, self.end = 0, 1, 2

    @classmethod
    def build(cls, smiles: list[str]) -> "Vocabulary":
        """The vocabulary of every token in ``smiles``, sorted."""
        return cls(sorted({token for s in smiles for token in tokenize(s)}))

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, smiles: str) -> list[int]:
        """Token ids of ``smiles`` followed by ``<end>``; a token outside the vocabulary is a
        ``ValueError`` that names it."""
        try:
            return [self.ids[token] for token in tokenize(smiles)] + [self.end]
        except KeyError as error:
            raise ValueError(f"SMILES {smiles!r} has the token {error.args[0]!r}, which is not in the vocabulary") from None

    def encode_batch(self, smiles: list[str], length: int) -> torch.Tensor:
        """``[N, length]`` token ids, each row padded after its ``<end>``; a SMILES too long for
        ``length`` is a ``ValueError``."""
        rows = torch.full((len(smiles), length), self.pad, dtype=torch.long)
        for row, s in enumerate(smiles):
            ids = self.encode(s)
            if len(ids) > length:
                raise ValueError(f"SMILES {s!r} takes {len(ids)} tokens, more than the length {length}")
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows

    def decode(self, ids) -> str:
        """The SMILES of one row of ids, up to its first ``<end>`` or ``<pad>`` (specials dropped)."""
        out = []
        for index in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if index in (self.end, self.pad):
                break
            if index != self.start and 0 <= index < len(self.tokens):
                out.append(self.tokens[index])
        return "".join(out)

    def decode_batch(self, tokens: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in tokens.cpu()]


def quiet_rdkit() -> None:
    """RDKit prints a line for every SMILES it cannot parse; generated ones often cannot."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def to_molecule(smiles: str):
    """The RDKit molecule of ``smiles``, or ``None`` when it is not a valid molecule."""
    from rdkit import Chem

    if not smiles:
        return None
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # RDKit raises on a few malformed inputs instead of returning None
        return None


@lru_cache(maxsize=200_000)
def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles``, or ``None`` when it is not a valid molecule."""
    from rdkit import Chem

    molecule = to_molecule(smiles)
    return Chem.MolToSmiles(molecule) if molecule is not None else None


# --- MOSES --------------------------------------------------------------------------------------


def moses_file(split: str = "train") -> Path:
    """The path of MOSES's ``train`` or ``test`` SMILES, shipped in the ``molsets`` distribution."""
    if split not in ("train", "test", "test_scaffolds"):
        raise ValueError(f"MOSES split must be train, test or test_scaffolds, got {split!r}")
    try:
        files = importlib.metadata.files("molsets") or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("MOSES's SMILES come with the molsets distribution: "
                                "pip install --no-deps molsets") from None
    for file in files:
        if str(file).endswith(f"moses/dataset/data/{split}.csv.gz"):
            return Path(file.locate())
    raise FileNotFoundError(f"the installed molsets has no {split}.csv.gz")


def read_moses(split: str = "train", limit: int | None = None) -> list[str]:
    """MOSES's SMILES of ``split``, in file order (the first ``limit`` of them)."""
    out = []
    with gzip.open(moses_file(split), "rt") as lines:
        header = next(lines).strip().split(",")
        column = header.index("SMILES")
        for line in lines:
            out.append(line.rstrip("\n").split(",")[column])
            if limit is not None and len(out) >= limit:
                break
    return out
