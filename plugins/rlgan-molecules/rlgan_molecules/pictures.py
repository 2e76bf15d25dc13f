"""Pictures of molecules: RDKit's grid drawings."""

from .smiles import to_molecule


def draw_molecules(smiles: list[str], path, legends: list[str] | None = None, columns: int = 6) -> None:
    """Draw the valid ones of ``smiles`` as a PNG grid at ``path`` (invalid ones are left out)."""
    from rdkit.Chem import Draw

    pairs = [(to_molecule(s), legend) for s, legend in zip(smiles, legends or [""] * len(smiles))]
    pairs = [(m, legend) for m, legend in pairs if m is not None]
    image = Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=columns, subImgSize=(250, 200),
                                 legends=[legend for _, legend in pairs])
    image.save(str(path))
