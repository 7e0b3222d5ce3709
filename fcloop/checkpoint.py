"""Checkpoints: the adapter in PEFT format plus the train state, written atomically.

A checkpoint is `step_NNNNNN/` holding `adapter_config.json` + `adapter_model.safetensors` (loadable by
`PeftModel.from_pretrained`) and `train_state.pt` (optimizer state, RNG states, run state; read back with
`torch.load(weights_only=True)`). It is written under a temporary name and renamed, so a folder with the
final name is always complete; a crash mid-write leaves only a `.partial` folder that is ignored.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fcloop.model import save_adapter
from fcloop.sharding import shard_optimizer_state

STEP_FOLDER = re.compile(r"^step_(\d{6,})$")
TRAIN_STATE_FILE = "train_state.pt"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, say); nothing partial is left behind."""


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


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())


def save_checkpoint(
    out_dir: str | Path,
    model,
    optimizer_state: dict[str, Any],
    state: RunState,
    keep_last: int,
    rng_per_rank: list[dict[str, Any]],
    adapter_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write step_NNNNNN/ atomically, then delete all but the newest `keep_last` checkpoints.
    `rng_per_rank` holds every rank's generator states, so each rank resumes its own dropout stream;
    `adapter_state` gives the trained weights whole when the model holds them sharded (None: the model's own)."""
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
        _fsync_tree(partial)
    except (OSError, RuntimeError) as error:  # a full disk surfaces as either, depending on the writer
        shutil.rmtree(partial, ignore_errors=True)
        previous = list_checkpoints(out_dir)
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointWriteError(f"could not write the checkpoint for step {state.step} ({error}); {kept}") from error
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    for old in list_checkpoints(out_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def find_resume_checkpoint(out_dir: str | Path, resume: str) -> Path | None:
    if resume == "never":
        return None
    if resume == "auto":
        checkpoints = list_checkpoints(out_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / TRAIN_STATE_FILE).exists():
        raise FileNotFoundError(f"checkpoint.resume = {resume!r}: no {TRAIN_STATE_FILE} there")
    return path


def load_adapter(folder: Path, model) -> None:
    """Restore the adapter weights (before any sharding: the model still holds whole tensors)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = load_file(folder / "adapter_model.safetensors")
    result = set_peft_model_state_dict(model, adapter)
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
    saved = torch.load(folder / TRAIN_STATE_FILE, weights_only=True, map_location="cpu")
    if len(saved["rng"]) != world_size:
        raise RuntimeError(
            f"{folder} was written by {len(saved['rng'])} process(es); resume it with the same number, not {world_size}"
        )
    optimizer.load_state_dict(shard_optimizer_state(saved["optimizer"], optimizer))
    restore_rng_states(saved["rng"][rank])
    return RunState(**saved["run_state"])
