"""Resume only into the same run: what fixes a run's data and shapes, recorded in each checkpoint.

A resumed run equals an uninterrupted one only if the model, the tokenizer, the encoded training examples,
the row plan (max_seq_len, packing, seed), the LoRA shape, the precision and the world size are the ones the
checkpoint was written with: the saved data cursor and weights mean nothing otherwise. Resuming with any of
these changed is refused, naming each. Every other setting (train.lr, the schedule's length, train.max_steps,
eval and checkpoint cadence, ...) may change; each change is reported in one line.

The precision recorded is the one the run computed with (fcloop.hardware), not the setting: a
`train.precision = "auto"` that chooses otherwise on another machine is refused like any other change, and
setting train.precision to the checkpoint's value resumes it there."""

from __future__ import annotations

import array
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from fcloop.config import Config
from fcloop.data.tokenization import Encoded
from fcloop.training.checkpoint import FINGERPRINT_FILE, START_OVER, ResumeRefused

# Config keys that fix the run's data and shapes (besides the computed tokenizer, data and world size keys).
FIXED_SETTINGS = (
    "model.path",
    "data.max_seq_len",
    "data.packing",
    "run.seed",
    "lora.r",
    "lora.alpha",
    "lora.target_modules",
    "lora.train_new_token_rows",
    "lora.train_token_rows",
    "train.precision",
)
PRECISION_KEY = "train.precision"
TOKENIZER_KEY = "tokenizer"
DATA_KEY = "training examples"
WORLD_KEY = "world size"
# Where the run is and how it resumes: these may differ from the checkpoint's by design (a copied run folder,
# resume = "auto" after "never"), and "resumed from FOLDER" already says where it continues.
NOT_REPORTED = ("checkpoint.resume", "run.out_dir")


def tokenizer_identity(tokenizer) -> str:
    """Its size and a hash of its whole vocabulary (token -> id): the same for the same tokenizer wherever it
    is stored, different when a token is added or an id moves."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    digest = hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{len(tokenizer)} tokens, sha256 {digest[:16]}"


def examples_identity(examples: list[Encoded]) -> str:
    """The count and a hash of every example's token ids and labels, in order: any change to the data, or to
    how it is read, rendered or tokenized, changes it. Hashing the ids as bytes takes milliseconds."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(array.array("q", (len(example), *example.input_ids, *example.labels)).tobytes())
    return f"{len(examples)} examples, sha256 {digest.hexdigest()[:16]}"


def flat_settings(config: Config) -> dict[str, Any]:
    """Every setting as `section.key` -> its JSON value (tuples as lists), comparable with a saved copy."""
    sections = json.loads(json.dumps(dataclasses.asdict(config)))
    return {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}


def run_fingerprint(
    config: Config, tokenizer, examples: list[Encoded], world_size: int, precision: str
) -> dict[str, Any]:
    """What a checkpoint records: `fixed` (must be equal to resume) and `settings` (may change, reported).
    `precision` is train.precision as resolved on this machine (fcloop.hardware): "bf16" or "fp32"."""
    settings = flat_settings(config)
    fixed = {key: settings[key] for key in FIXED_SETTINGS}
    fixed[PRECISION_KEY] = precision
    fixed[TOKENIZER_KEY] = tokenizer_identity(tokenizer)
    fixed[DATA_KEY] = examples_identity(examples)
    fixed[WORLD_KEY] = world_size
    return {"fixed": fixed, "settings": settings}


def shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def resume_report(folder: Path, fingerprint: dict[str, Any]) -> list[str]:
    """Lines that say what changed since the checkpoint in `folder` was written (one per allowed setting);
    raises ResumeRefused naming every changed key that fixes the run's data or shapes, old and new value."""
    path = folder / FINGERPRINT_FILE
    if not path.exists():
        return [
            f"warning: {folder} has no {FINGERPRINT_FILE} (written by an older fcloop): resuming without checking "
            "that the data and shapes are the same"
        ]
    saved = json.loads(path.read_text(encoding="utf-8"))
    old_fixed, new_fixed = saved["fixed"], fingerprint["fixed"]
    refused = [
        f"  {key}: {shown(old_fixed.get(key))} -> {shown(value)}"
        for key, value in new_fixed.items()
        if old_fixed.get(key) != value
    ]
    if refused:
        hints = []
        if any(line.startswith(f"  {DATA_KEY}:") for line in refused):
            hints.append(f"{DATA_KEY}: data.train, or a setting of how it is read, rendered or tokenized, changed")
        if (
            any(line.startswith(f"  {PRECISION_KEY}:") for line in refused)
            and fingerprint["settings"].get(PRECISION_KEY) == "auto"
        ):
            hints.append(f'{PRECISION_KEY} = "auto" chose another precision on this machine')
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ResumeRefused(
            f"cannot resume from {folder}: it belongs to a run with other data or shapes{hint}:\n"
            + "\n".join(refused)
            + f"\n{START_OVER}; or set these back to the checkpoint's values to resume it"
        )
    old_settings = saved["settings"]
    return [
        f"changed on resume: {key}: {shown(old_settings.get(key))} -> {shown(value)}"
        for key, value in fingerprint["settings"].items()
        if key not in NOT_REPORTED and key not in new_fixed and old_settings.get(key) != value
    ]


def saved_settings(folder: Path) -> dict[str, Any] | None:
    """The settings the checkpoint in `folder` was written with, or None for an older fcloop's checkpoint."""
    path = folder / FINGERPRINT_FILE
    return json.loads(path.read_text(encoding="utf-8"))["settings"] if path.exists() else None
