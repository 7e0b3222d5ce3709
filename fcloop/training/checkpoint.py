"""Checkpoints: the adapter in PEFT format plus the train state, written atomically.

A checkpoint is `step_NNNNNN/` holding `adapter_config.json` + `adapter_model.safetensors` (loadable by
`PeftModel.from_pretrained`) and `train_state.pt` (optimizer state, RNG states, run state; read back with
`torch.load(weights_only=True)`), `fingerprint.json` (what fixes the run's data and shapes, checked on resume)
and, written last, `manifest.json` (size and sha256 of every file). It is written under a temporary name and
renamed, so a folder with the final name is always complete; a crash mid-write leaves only a `.partial` folder
that is ignored. A file damaged later (a bad copy, a failing disk) no longer matches the manifest: resume skips
that checkpoint for the newest intact one, and never loads a damaged file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from fcloop.errors import FcloopError
from fcloop.model.lora import save_adapter
from fcloop.model.sharding import shard_optimizer_state

STEP_FOLDER = re.compile(r"^step_(\d{6,})$")
TRAIN_STATE_FILE = "train_state.pt"
FINGERPRINT_FILE = "fingerprint.json"
MANIFEST_FILE = "manifest.json"
FULL_DISK_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full
START_OVER = (
    'start a new run instead: a new run.out_dir, or checkpoint.resume = "restart" to delete this run and start over'
)


class CheckpointWriteError(FcloopError, OSError):
    """A checkpoint could not be written (a full disk, say); nothing partial is left behind."""


class CheckpointDamaged(FcloopError, RuntimeError):
    """A checkpoint or adapter folder whose files do not match its manifest, and no intact one to use."""


class CheckpointNotFound(FcloopError, FileNotFoundError):
    """checkpoint.resume names a folder that holds no checkpoint."""


class CheckpointNotLoadable(FcloopError, RuntimeError):
    """A train state that torch.load(weights_only=True) refuses: not a file fcloop wrote."""


class ResumeRefused(FcloopError, RuntimeError):
    """The checkpoint belongs to another run (other data or shapes) or cannot be resumed as configured."""


@dataclass
class RunState:
    """Everything that says where a run is; exactly what a checkpoint saves besides weights and optimizer."""

    step: int = 0
    """Optimizer steps completed."""
    epoch: int = 0
    """Current epoch of the data plan."""
    row_in_epoch: int = 0
    """Data cursor: rows of the current epoch already consumed."""
    tokens_seen: int = 0
    supervised_tokens_seen: int = 0
    skipped_steps: int = 0
    """Steps whose update was skipped for a non-finite loss or gradient (train.on_nonfinite = "skip")."""
    evaluation_pending: bool = False
    """The evaluation due at `step` was stopped part-way (a SIGTERM) and discarded: a resumed run does it first."""


def step_folder(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"step_{step:06d}"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints in step order."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir() if p.is_dir() and STEP_FOLDER.match(p.name) and (p / TRAIN_STATE_FILE).exists()
    ]
    return sorted(found, key=lambda p: int(STEP_FOLDER.match(p.name).group(1)))


def rng_states() -> dict[str, Any]:
    # Only torch's generators drive randomness in training (LoRA dropout); the data order is derived from
    # run.seed and the epoch, so it needs no saved state.
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file of `folder`; written last, so it vouches for all of them."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
    entries = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=1) + "\n", encoding="utf-8")


def manifest_problem(folder: Path) -> str | None:
    """What in `folder` differs from its manifest (the file and how), or None when every file matches. A folder
    without a manifest has nothing to check against: see `has_manifest`."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{MANIFEST_FILE} is unreadable ({error})"
    for name, entry in entries.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if (size := file.stat().st_size) != entry["bytes"]:
            return f"{name} has {size} bytes, the manifest says {entry['bytes']} (truncated or overwritten)"
        if file_sha256(file) != entry["sha256"]:
            return f"{name} does not match its sha256 in the manifest (its bytes changed)"
    return None


def has_manifest(folder: Path) -> bool:
    return (folder / MANIFEST_FILE).exists()


def verify_folder(folder: Path, report: Callable[[str], None] = print) -> None:
    """Raise CheckpointDamaged if a file of `folder` (a checkpoint, or a final/ adapter) differs from its
    manifest. A folder without one (an older fcloop's, or another tool's adapter) is used, with a note."""
    if not has_manifest(folder):
        report(f"note: {folder} has no {MANIFEST_FILE} (written by an older fcloop or another tool); not verified")
    elif problem := manifest_problem(folder):
        raise CheckpointDamaged(f"{folder} is damaged: {problem}; it cannot be used")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())


def write_failure(error: BaseException, folder: Path) -> str:
    """Why a write into `folder` failed, in words, when the writer's own message may hide it: safetensors wraps
    "No space left on device" in its own error type, and torch.save says only "basic_ios::clear: iostream
    error" or "unexpected pos" (its C++ stream could not write). Asked of the disk itself, before the partial
    files are removed: almost no space left means the disk is full."""
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
        return ": the disk is full"
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < FULL_DISK_BYTES:
            return ": the disk is full"
    return ""


def save_checkpoint(
    out_dir: str | Path,
    model,
    optimizer_state: dict[str, Any],
    state: RunState,
    keep_last: int,
    rng_per_rank: list[dict[str, Any]],
    adapter_state: dict[str, torch.Tensor] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> Path:
    """Write step_NNNNNN/ atomically, then delete all but the newest `keep_last` checkpoints.
    `rng_per_rank` holds every rank's generator states, so each rank resumes its own dropout stream;
    `adapter_state` gives the trained weights whole when the model holds them sharded (None: the model's own);
    `fingerprint` (fcloop.training.fingerprint) is what a resume must match."""
    final = step_folder(out_dir, state.step)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        save_adapter(model, partial, adapter_state)
        torch.save(
            {"run_state": asdict(state), "optimizer": optimizer_state, "rng": rng_per_rank},
            partial / TRAIN_STATE_FILE,
        )
        if fingerprint is not None:
            (partial / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=1) + "\n", encoding="utf-8")
        write_manifest(partial)
        _fsync_tree(partial)
    except (OSError, RuntimeError, SafetensorError) as error:  # a full disk surfaces as any, by writer
        reason = write_failure(error, partial.parent)
        shutil.rmtree(partial, ignore_errors=True)
        previous = list_checkpoints(out_dir)
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointWriteError(
            f"could not write the checkpoint for step {state.step}{reason} ({error}); {kept}; "
            'free some space, then resume with checkpoint.resume = "auto"'
        ) from error
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    for old in list_checkpoints(out_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def find_resume_checkpoint(out_dir: str | Path, resume: str, report: Callable[[str], None] = print) -> Path | None:
    """The checkpoint to resume from, verified against its manifest: with "auto" the newest intact one (each
    damaged newer one is reported and skipped), with a path that one. Never a damaged one."""
    if resume in ("never", "restart"):  # a new run (fcloop.training.run_folder keeps it from mixing with an old one)
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / TRAIN_STATE_FILE).exists():
            raise CheckpointNotFound(f"checkpoint.resume = {resume!r}: no {TRAIN_STATE_FILE} there")
        verify_folder(path, report)
        return path
    damaged = []
    for folder in reversed(list_checkpoints(out_dir)):
        if problem := manifest_problem(folder):
            report(f"warning: checkpoint {folder} is damaged: {problem}; skipping it")
            damaged.append(folder.name)
            continue
        if not has_manifest(folder):
            report(f"note: {folder} has no {MANIFEST_FILE} (written by an older fcloop); its files are not verified")
        if damaged:
            report(f"warning: resuming from {folder}, the newest intact checkpoint")
        return folder
    if damaged:
        raise CheckpointDamaged(
            f"no intact checkpoint to resume from in {out_dir}: {', '.join(damaged)} "
            f"{'is' if len(damaged) == 1 else 'are'} damaged; {START_OVER}"
        )
    return None


def load_adapter(folder: Path, model) -> None:
    """Restore the adapter weights (before any sharding: the model still holds whole tensors)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = load_file(folder / "adapter_model.safetensors")
    try:
        result = set_peft_model_state_dict(model, adapter)
    except RuntimeError as error:  # shapes that differ (an older checkpoint without a fingerprint)
        reason = str(error).strip().splitlines()[-1].strip()
        raise ResumeRefused(
            f"{folder}: its adapter does not fit this config's model and LoRA ({reason}); {START_OVER}"
        ) from error
    # named_parameters lists a tied parameter once (the lm_head's token rows are the embedding's), so this
    # names exactly the trained weights that must come from the checkpoint.
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    missing = [key for key in result.missing_keys if key in trained]
    if missing:
        raise RuntimeError(f"{folder}: the adapter lacks trained weights the model has: {missing[:5]}")


def load_train_state(folder: Path, optimizer: torch.optim.Optimizer, rank: int = 0, world_size: int = 1) -> RunState:
    """Restore the optimizer state (its whole tensors split like each sharded parameter, if any) and this
    rank's RNG states; return the run state to continue from. Resuming needs the world size the checkpoint
    was written with."""
    try:
        saved = torch.load(folder / TRAIN_STATE_FILE, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False: never for a file of unknown origin (it runs code).
        raise CheckpointNotLoadable(
            f"{folder / TRAIN_STATE_FILE} is not a checkpoint fcloop wrote: it holds objects other than tensors and "
            "plain values, so it was not loaded (and must not be loaded with weights_only=False, which would run "
            "code from the file); resume from a checkpoint fcloop wrote, or start a new run"
        ) from None
    if len(saved["rng"]) != world_size:
        raise ResumeRefused(
            f"{folder} was written by {len(saved['rng'])} process(es); resume it with the same number, not {world_size}"
        )
    optimizer.load_state_dict(shard_optimizer_state(saved["optimizer"], optimizer))
    restore_rng_states(saved["rng"][rank])
    return RunState(**saved["run_state"])
