"""PMO's 20 oracles that need RDKit alone, as GuacaMol defines them (TDC's are GuacaMol's).

Each oracle maps one RDKit molecule to a score in [0, 1].  They are composed, as GuacaMol composes
them, from a few parts: Tanimoto similarity to a target under one fingerprint, RDKit descriptors,
SMARTS matches, and score modifiers (a clipped line, a Gaussian, a half Gaussian), joined by an
arithmetic or geometric mean.  Fingerprints are RDKit's count-based Morgan (ECFP4, ECFP6; FCFP4
with feature invariants), atom-pair (maximum length 10) and Gobbi 2-D pharmacophore fingerprints,
computed with the same RDKit calls GuacaMol and TDC make, except that the pharmacophore
fingerprint's bits are enumerated here (:func:`pharmacophore_fingerprint`: the same bits as RDKit's
``Generate.Gen2DFingerprint``, several times faster).

Isomer scores follow GuacaMol: each element's count (hydrogens included) through a Gaussian of
width 1 around the target's count, the total atom count through one of width 2, then the geometric
mean.  (PyTDC's versions around 0.3 counted the total by parsing the SMILES text instead, which
moves ``isomers_*``, ``zaleplon_mpo`` and ``sitagliptin_mpo``.)
"""

import functools
import itertools
import re
from typing import Callable

import numpy as np

from .smiles import quiet_rdkit

Score = Callable[[object], float]  # an RDKit molecule -> a float


# --- modifiers ----------------------------------------------------------------------------------


def clipped(upper: float, lower: float = 0.0) -> Callable[[float], float]:
    """0 at ``lower``, 1 at ``upper``, linear between, clipped to [0, 1]."""
    return lambda x: float(np.clip((x - lower) / (upper - lower), 0.0, 1.0))


def gaussian(mu: float, sigma: float) -> Callable[[float], float]:
    return lambda x: float(np.exp(-0.5 * ((x - mu) / sigma) ** 2))


def at_least(mu: float, sigma: float) -> Callable[[float], float]:
    """1 from ``mu`` up, a Gaussian below it (GuacaMol's MaxGaussianModifier)."""
    return lambda x: gaussian(mu, sigma)(min(x, mu))


def at_most(mu: float, sigma: float) -> Callable[[float], float]:
    """1 up to ``mu``, a Gaussian above it (GuacaMol's MinGaussianModifier)."""
    return lambda x: gaussian(mu, sigma)(max(x, mu))


def geometric_mean(values: list[float]) -> float:
    return float(np.prod(values) ** (1.0 / len(values)))


def arithmetic_mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


# --- parts --------------------------------------------------------------------------------------


def fingerprint(molecule, kind: str):
    from rdkit.Chem import AllChem

    if kind == "ECFP4":
        return AllChem.GetMorganFingerprint(molecule, 2)
    if kind == "ECFP6":
        return AllChem.GetMorganFingerprint(molecule, 3)
    if kind == "FCFP4":
        return AllChem.GetMorganFingerprint(molecule, 2, useFeatures=True)
    if kind == "AP":
        return AllChem.GetAtomPairFingerprint(molecule, maxLength=10)
    if kind == "PHCO":
        return pharmacophore_fingerprint(molecule)
    raise ValueError(f"unknown fingerprint {kind!r}")


def pharmacophore_fingerprint(molecule):
    """The Gobbi 2-D pharmacophore fingerprint (GuacaMol's ``PHCO``), bit for bit what RDKit's
    ``Generate.Gen2DFingerprint(molecule, Gobbi_Pharm2D.factory)`` returns, without its Python
    loop over every combination of feature matches.

    RDKit's definition: a bit for each pair and each triple of distinct feature matches whose
    every pairwise distance (the fewest bonds between any atom of one and any atom of the other)
    lies in ``[2, 100)``; the matches of a pair or triple ordered by family, then by atom indices;
    the bit index from the factory (``GetBitIdx``, which bins the distances and orders a
    triangle).  Here the distances of all matches come from one array operation and ``GetBitIdx``
    is asked once per distinct combination of families and distances."""
    from rdkit import Chem

    factory = _pharmacophore_factory()
    features = sorted({(family, atoms) for family, found in enumerate(factory.GetMolFeats(molecule))
                       for atoms in found})
    signature = factory.GetSignature()
    count = len(features)
    if count < 2:
        return signature
    member = np.zeros((count, molecule.GetNumAtoms()), dtype=bool)
    for index, (_, atoms) in enumerate(features):
        member[index, list(atoms)] = True
    bonds = Chem.GetDistanceMatrix(molecule, factory.includeBondOrder)  # disconnected atoms: 1e8
    nearest_atom = np.where(member[:, :, None], bonds[None], np.inf).min(1)  # [feature, atom]
    distance = np.minimum(np.where(member[None], nearest_atom[:, None], np.inf).min(2), 100).astype(int)
    valid = (distance >= 2) & (distance < 100)
    families, near = [family for family, _ in features], distance.tolist()
    bits = {_pharmacophore_bit((families[i], families[j]), (near[i][j],))
            for i, j in zip(*np.nonzero(np.triu(valid, 1)))}
    i, j, k = _triples(count).T
    for a, b, c in _triples(count)[valid[i, j] & valid[i, k] & valid[j, k]].tolist():
        bits.add(_pharmacophore_bit((families[a], families[b], families[c]), (near[a][b], near[a][c], near[b][c])))
    signature.SetBitsFromList(sorted(bits))
    return signature


@functools.cache
def _pharmacophore_factory():
    from rdkit.Chem.Pharm2D import Gobbi_Pharm2D

    factory = Gobbi_Pharm2D.factory
    if (factory.minPointCount, factory.maxPointCount, factory.useCounts, factory.shortestPathsOnly) != (2, 3, False, True):
        raise RuntimeError("RDKit's Gobbi_Pharm2D factory is not the 2-3 point, shortest-path bit fingerprint "
                           "pharmacophore_fingerprint reproduces")
    return factory


@functools.lru_cache(maxsize=1 << 16)
def _pharmacophore_bit(families: tuple, distances: tuple) -> int:
    return _pharmacophore_factory().GetBitIdx(list(families), list(distances), sortIndices=False)


@functools.lru_cache(maxsize=32)
def _triples(count: int) -> np.ndarray:
    """Every ``i < j < k`` below ``count``, ``[T, 3]``."""
    return np.array(list(itertools.combinations(range(count), 3)), dtype=np.int64).reshape(-1, 3)


def parse(smiles: str):
    from rdkit import Chem

    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        raise ValueError(f"not a valid SMILES: {smiles!r}")
    return molecule


def similarity(target: str, kind: str, modifier=None) -> Score:
    """Tanimoto similarity to ``target`` under fingerprint ``kind``, through ``modifier``."""
    from rdkit.DataStructs import TanimotoSimilarity

    reference = fingerprint(parse(target), kind)
    modifier = modifier or (lambda x: x)
    return lambda molecule: modifier(TanimotoSimilarity(fingerprint(molecule, kind), reference))


def descriptor(function: Callable, modifier) -> Score:
    return lambda molecule: modifier(function(molecule))


def smarts(pattern: str, present: bool = True) -> Score:
    """1 when the molecule matches ``pattern`` (``present``) or does not (not ``present``)."""
    from rdkit import Chem

    query = Chem.MolFromSmarts(pattern)
    return lambda molecule: float(molecule.HasSubstructMatch(query) == present)


def count_atoms(element: str):
    from rdkit import Chem

    def count(molecule) -> int:
        if element == "H":
            molecule = Chem.AddHs(molecule)
        return sum(1 for atom in molecule.GetAtoms() if atom.GetSymbol() == element)

    return count


def total_atoms(molecule) -> int:
    from rdkit import Chem

    return Chem.AddHs(molecule).GetNumAtoms()


def isomer(formula: str) -> Score:
    """Closeness to a molecular formula (GuacaMol's IsomerScoringFunction, geometric mean)."""
    counts = [(element, int(n) if n else 1) for element, n in re.findall(r"([A-Z][a-z]*)(\d*)", formula)]
    parts = [descriptor(count_atoms(element), gaussian(n, 1.0)) for element, n in counts]
    parts.append(descriptor(total_atoms, gaussian(sum(n for _, n in counts), 2.0)))
    return mean_of(parts, geometric_mean)


def mean_of(parts: list[Score], mean) -> Score:
    return lambda molecule: mean([part(molecule) for part in parts])


# --- descriptors ----------------------------------------------------------------------------------


def _descriptors():
    from rdkit.Chem import Descriptors, rdMolDescriptors

    return dict(logp=Descriptors.MolLogP, tpsa=Descriptors.TPSA, bertz=Descriptors.BertzCT,
                rings=rdMolDescriptors.CalcNumRings, aromatic_rings=rdMolDescriptors.CalcNumAromaticRings)


# --- the oracles ----------------------------------------------------------------------------------

CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR, MENTHOL = "CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
HOP_START = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"


def _qed() -> Score:
    from rdkit.Chem import QED

    return QED.qed


def _sitagliptin() -> Score:
    d = _descriptors()
    target = parse(SITAGLIPTIN)
    return mean_of([similarity(SITAGLIPTIN, "ECFP4", gaussian(0, 0.1)),
                    descriptor(d["logp"], gaussian(d["logp"](target), 0.2)),
                    descriptor(d["tpsa"], gaussian(d["tpsa"](target), 5)),
                    isomer("C16H15F6N5O")], geometric_mean)


def _valsartan() -> Score:
    d = _descriptors()
    other = parse("NC(CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F")  # sitagliptin's properties
    return mean_of([smarts("CN(C=O)Cc1ccc(c2ccccc2)cc1"),
                    descriptor(d["logp"], gaussian(d["logp"](other), 0.2)),
                    descriptor(d["tpsa"], gaussian(d["tpsa"](other), 5)),
                    descriptor(d["bertz"], gaussian(d["bertz"](other), 30))], geometric_mean)


def _oracle_builders() -> dict[str, Callable[[], Score]]:
    d = _descriptors
    return {
        "qed": _qed,
        "celecoxib_rediscovery": lambda: similarity(CELECOXIB, "ECFP4"),
        "troglitazone_rediscovery": lambda: similarity(TROGLITAZONE, "ECFP4"),
        "thiothixene_rediscovery": lambda: similarity(THIOTHIXENE, "ECFP4"),
        "albuterol_similarity": lambda: similarity(ALBUTEROL, "FCFP4", clipped(0.75)),
        "mestranol_similarity": lambda: similarity(MESTRANOL, "AP", clipped(0.75)),
        "isomers_c7h8n2o2": lambda: isomer("C7H8N2O2"),
        "isomers_c9h10n2o2pf2cl": lambda: isomer("C9H10N2O2PF2Cl"),
        "median1": lambda: mean_of([similarity(CAMPHOR, "ECFP4"), similarity(MENTHOL, "ECFP4")], geometric_mean),
        "median2": lambda: mean_of([similarity(TADALAFIL, "ECFP6"), similarity(SILDENAFIL, "ECFP6")], geometric_mean),
        "amlodipine_mpo": lambda: mean_of([similarity(AMLODIPINE, "ECFP4"),
                                           descriptor(d()["rings"], gaussian(3, 0.5))], geometric_mean),
        "fexofenadine_mpo": lambda: mean_of([similarity(FEXOFENADINE, "AP", clipped(0.8)),
                                             descriptor(d()["tpsa"], at_least(90, 10)),
                                             descriptor(d()["logp"], at_most(4, 1))], geometric_mean),
        "osimertinib_mpo": lambda: mean_of([similarity(OSIMERTINIB, "FCFP4", clipped(0.8)),
                                            similarity(OSIMERTINIB, "ECFP6", at_most(0.85, 0.1)),
                                            descriptor(d()["tpsa"], at_least(100, 10)),
                                            descriptor(d()["logp"], at_most(1, 1))], geometric_mean),
        "perindopril_mpo": lambda: mean_of([similarity(PERINDOPRIL, "ECFP4"),
                                            descriptor(d()["aromatic_rings"], gaussian(2, 0.5))], geometric_mean),
        "ranolazine_mpo": lambda: mean_of([similarity(RANOLAZINE, "AP", clipped(0.7)),
                                           descriptor(d()["logp"], at_least(7, 1)),
                                           descriptor(count_atoms("F"), gaussian(1, 1.0)),
                                           descriptor(d()["tpsa"], at_least(95, 20))], geometric_mean),
        "sitagliptin_mpo": _sitagliptin,
        "zaleplon_mpo": lambda: mean_of([similarity(ZALEPLON, "ECFP4"), isomer("C19H17N3O2")], geometric_mean),
        "deco_hop": lambda: mean_of([similarity(HOP_START, "PHCO", clipped(0.85)),
                                     smarts("CS([#6])(=O)=O", present=False),
                                     smarts("[#7]-c1ccc2ncsc2c1", present=False),
                                     smarts(HOP_SCAFFOLD)], arithmetic_mean),
        "scaffold_hop": lambda: mean_of([similarity(HOP_START, "PHCO", clipped(0.75)),
                                         smarts("[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"),
                                         smarts(HOP_SCAFFOLD, present=False)], arithmetic_mean),
        "valsartan_smarts": _valsartan,
    }


PMO_TASKS = tuple(_oracle_builders())


def oracle(name: str) -> Score:
    """The oracle ``name`` (one of :data:`PMO_TASKS`): a function of an RDKit molecule."""
    builders = _oracle_builders()
    if name not in builders:
        raise KeyError(f"no PMO oracle named {name!r}; the oracles: {', '.join(builders)}")
    quiet_rdkit()
    return builders[name]()
