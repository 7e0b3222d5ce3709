"""New tokens, LoRA and the exact choice of what trains: what a LoRA or trainable-token parameter is called."""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from fcloop.config import LoraConfig

LORA_PARAMETER_MARKERS = ("lora_A", "lora_B")
TOKEN_ROWS_MARKER = "trainable_tokens_delta"


def add_token_rows(model: nn.Module, vocab_size: int, new_token_ids: list[int]) -> None:
    """Grow the (tied) embedding to `vocab_size`; new rows start at the mean of the old rows, so new tokens
    begin as an average token rather than noise with an outsized norm."""
    old_size = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= old_size and not new_token_ids:
        return
    if vocab_size > old_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        # The mean of the rows that existed before any new token (new tokens may reuse spare rows of a padded
        # embedding, so they need not all lie past old_size).
        first_new = min(new_token_ids, default=old_size)
        mean_row = weight[: min(old_size, first_new)].float().mean(dim=0)
        weight[new_token_ids] = mean_row.to(weight.dtype)


@contextlib.contextmanager
def peft_warnings_that_do_not_apply() -> Iterator[None]:
    """Silence the two warnings peft gives on every fcloop run, each of which does not apply here."""
    with warnings.catch_warnings():
        # peft asks for `ensure_weight_tying` when a LoRA sits on the tied lm_head: tying would put the same LoRA
        # on the input embedding. fcloop adapts lm_head alone on purpose (the embedding's new-token rows train as
        # their own tensor), and fcloop.export merges it into an untied copy of lm_head.
        warnings.filterwarnings("ignore", message=r".*`ensure_weight_tying` is not set to True", category=UserWarning)
        # peft itself reads transformers' deprecated alias `is_gradient_checkpointing` (PeftModel.__init__);
        # nothing in fcloop's call can avoid it.
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def apply_lora(
    model: nn.Module, config: LoraConfig, new_token_ids: list[int], existing_token_ids: list[int] = ()
) -> nn.Module:
    """Wrap with peft LoRA from [lora]; new-token rows (and the rows of `existing_token_ids`, from
    lora.train_token_rows) train through peft's trainable tokens: only those rows are trained and saved,
    also through the tied lm_head. Their layers compute sparsely (`fcloop.model.token_rows`): no full-matrix copy
    or gradient per forward, the same numbers and the same saved adapter as peft's own."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from fcloop.model.token_rows import use_sparse_token_rows

    token_rows = [*(new_token_ids if config.train_new_token_rows else []), *existing_token_ids]

    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        trainable_token_indices={"embed_tokens": token_rows} if token_rows else None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with peft_warnings_that_do_not_apply():
        model = get_peft_model(model, peft_config)
    use_sparse_token_rows(model)
    return model


def is_selected_trainable(name: str) -> bool:
    return any(marker in name for marker in (*LORA_PARAMETER_MARKERS, TOKEN_ROWS_MARKER))


def select_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """State exactly what trains: LoRA A/B and the new-token rows, in fp32. Everything else is frozen, and
    this is asserted rather than trusted."""
    selected = []
    for name, parameter in model.named_parameters():
        trainable = is_selected_trainable(name)
        parameter.requires_grad_(trainable)
        if trainable:
            if parameter.dtype != torch.float32:
                # LoRA weights and optimizer state stay fp32 (bf16 updates underflow at LoRA learning rates).
                parameter.data = parameter.data.float()
            selected.append((name, parameter))
    unexpected = [n for n, p in model.named_parameters() if p.requires_grad and not is_selected_trainable(n)]
    if unexpected:
        raise RuntimeError(f"parameters outside the selection are trainable: {unexpected[:5]}")
    if not selected:
        raise RuntimeError("nothing to train: no LoRA or new-token parameter was created; check lora.target_modules")
    return selected


def parameter_groups(selected: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on LoRA matrices only: decaying embedding rows would pull new tokens toward zero."""
    decay = [p for n, p in selected if TOKEN_ROWS_MARKER not in n]
    no_decay = [p for n, p in selected if TOKEN_ROWS_MARKER in n]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def module_kind(name: str) -> str:
    if TOKEN_ROWS_MARKER in name:
        return "new-token rows"
    for part in name.split("."):
        if part.endswith(("_proj", "lm_head")):
            return f"LoRA {part}"
    return "other"


def trainable_table(model: nn.Module) -> str:
    """Trainable parameters by module kind, with the total and the share of all parameters."""
    counts: Counter[str] = Counter()
    total = 0
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            counts[module_kind(name)] += parameter.numel()
    trainable = sum(counts.values())
    width = max([len(kind) for kind in counts] + [9])
    lines = [f"{'trainable':<{width}}  {'params':>12}"]
    lines += [f"{kind:<{width}}  {count:>12,}" for kind, count in sorted(counts.items())]
    lines.append(f"{'total':<{width}}  {trainable:>12,}  ({trainable / total:.3%} of {total:,})")
    return "\n".join(lines)


def save_adapter(model: nn.Module, folder: Path, adapter_state: dict[str, torch.Tensor] | None = None) -> None:
    """The trained weights only, in PEFT format. `save_embedding_layers=False`: with a LoRA on the tied
    lm_head, peft would otherwise also save the whole frozen embedding (670 MB for Gemma-3-270M); the new-token
    rows are saved as their own small tensor either way. `adapter_state` gives the weights whole when the
    model holds them sharded."""
    model.save_pretrained(folder, state_dict=adapter_state, save_embedding_layers=False)


@contextlib.contextmanager
def token_rows_merged(model: nn.Module) -> Iterator[None]:
    """For inference: write the trained new-token rows into the frozen embedding, then restore the original
    rows bitwise. Unmerged, peft's own layer (as `PeftModel.from_pretrained` loads it) rebuilds the whole
    [vocab x hidden] matrix on every forward, which dominates each decoding step with Gemma's vocabulary of a
    quarter million tokens; merged, even fcloop's sparse layer's per-call lookups are gone."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    layers = [m for m in model.modules() if isinstance(m, TrainableTokensLayer) and not m.merged]
    for layer in layers:
        layer.merge()
    try:
        yield
    finally:
        # Reverse order: with tied weights each layer saved the rows as they were when it was created.
        for layer in reversed(layers):
            layer.unmerge()
