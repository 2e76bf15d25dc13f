"""Crash-safe checkpoints: tensors in safetensors, everything else in JSON, never a pickle.

A checkpoint is a folder ``step-NNNNNNNN`` holding ``tensors.safetensors`` and ``state.json``
(which records the tensors file's SHA-256).  It is written under a temporary name, fsynced and
renamed into place, so a folder with that name is always complete.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

TENSORS = "tensors.safetensors"
STATE = "state.json"
PREFIX = "step-"


def save(folder: Path, step: int, tensors: dict[str, torch.Tensor], state: dict, keep: int) -> Path:
    """Write checkpoint ``folder/step-NNNNNNNN`` atomically; keep the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    temporary = folder / f".tmp-{final.name}-{os.getpid()}"
    for leftover in folder.glob(".t*-*"):  # temporary or discarded folders of a crashed writer
        shutil.rmtree(leftover, ignore_errors=True)
    temporary.mkdir()
    save_file({name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}, temporary / TENSORS)
    state = {**state, "step": step, "tensors_sha256": _sha256(temporary / TENSORS)}
    (temporary / STATE).write_text(json.dumps(state, indent=1))
    for path in (temporary / TENSORS, temporary / STATE, temporary):
        _fsync(path)
    if final.exists():
        _discard(final)
    os.replace(temporary, final)
    _fsync(folder)
    for old in list_checkpoints(folder)[:-keep]:
        _discard(old)
    return final


def _discard(path: Path) -> None:
    """Remove a checkpoint folder: first renamed away (atomic), so a crash never leaves half of one."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.name.startswith(PREFIX) and path.is_dir())


def newest(path: Path) -> Path | None:
    """``path`` itself when it is a checkpoint folder, else the newest checkpoint of the run folder
    ``path`` (``None`` when it has none)."""
    path = Path(path)
    if (path / STATE).exists():
        return path
    found = list_checkpoints(path / "checkpoints")
    return found[-1] if found else None


def newest_valid(folder: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint in ``folder`` that reads and verifies (``None`` when none does), and
    why each newer one was passed over."""
    skipped = []
    for path in reversed(list_checkpoints(Path(folder))):
        try:
            load(path)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        return path, skipped
    return None, skipped


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a checkpoint's ``tensors`` under ``prefix.`` (one model role, one plugin's
    state), without the prefix."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint folder; a clear :class:`CheckpointError` for anything amiss."""
    path = Path(path)
    if not (path / STATE).is_file() or not (path / TENSORS).is_file():
        raise CheckpointError(f"{path}: not a checkpoint (expected {STATE} and {TENSORS})")
    try:
        state = json.loads((path / STATE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path / STATE}: unreadable ({error})") from None
    if not isinstance(state, dict) or "tensors_sha256" not in state or "step" not in state:
        raise CheckpointError(f"{path / STATE}: missing fields; not written by rlgan")
    if _sha256(path / TENSORS) != state["tensors_sha256"]:
        raise CheckpointError(f"{path / TENSORS}: contents do not match the checksum in {STATE} (corrupt or tampered)")
    try:
        tensors = load_file(path / TENSORS)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path / TENSORS}: unreadable ({error})") from None
    return tensors, state


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old or the new file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    _fsync(temporary)
    os.replace(temporary, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
