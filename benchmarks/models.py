"""The benchmarks' models: gemma-2-2b from its real config with random weights (nothing to download), or
fcloop's tiny model, set up the way `fcloop.training.loop.train` sets them up; and the recipe's own LoRA."""

from __future__ import annotations

import dataclasses

import torch
import transformers
from torch import nn

from fcloop.config import Config, TrainConfig
from fcloop.data.tokenization import prepare_tokenizer
from fcloop.hardware import choose_precision, detect_hardware
from fcloop.model.load import load_model, load_tokenizer
from fcloop.model.lora import add_token_rows, parameter_groups, peft_warnings_that_do_not_apply
from fcloop.model.tiny import GEMMA2_VOCAB, TINY_PATH
from fcloop.model.tiny import gemma2_2b_config as fcloop_gemma2_2b_config

GEMMA2_2B_VOCAB = GEMMA2_VOCAB
NEW_TOKENS = 8  # the eight tags fcloop adds: 256000 -> 256008 rows, as in the recipe
# The Agents Course notebook's LoRA (ANCHORS section 1): r 16, alpha 64, dropout 0.05, these targets. Its
# embed_tokens target is a LoRA on the embedding (peft's lora_embedding_A/B), not trained rows.
RECIPE_LORA_TARGETS = (
    "gate_proj", "q_proj", "lm_head", "o_proj", "k_proj", "embed_tokens", "down_proj", "up_proj", "v_proj",
)  # fmt: skip


def precision_resolved(config: Config, device: torch.device) -> Config:
    """The config with train.precision as the loop resolves it on `device`: "auto" becomes bf16 or fp32
    (fcloop.hardware), so a benchmark times and reports what the loop would run."""
    precision, _ = choose_precision(config.train.precision, detect_hardware(device))
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))


def gemma2_2b_config(attn_implementation: str) -> transformers.Gemma2Config:
    """google/gemma-2-2b's architecture (ANCHORS section 3; the same as `model.path = "random:gemma2-2b"`),
    so no download is needed."""
    config = fcloop_gemma2_2b_config(GEMMA2_2B_VOCAB)
    config._attn_implementation = attn_implementation
    config.use_cache = False
    return config


def gemma2_2b_model(attn_implementation: str, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    """Random-init gemma-2-2b created directly on `device` (no 10 GB detour through host memory)."""
    with torch.device(device):
        return transformers.AutoModelForCausalLM.from_config(gemma2_2b_config(attn_implementation), dtype=dtype)


def base_model(config: Config, attention: str, dtype: torch.dtype, device: torch.device) -> tuple[nn.Module, list[int]]:
    """(frozen base model with the new-token rows added, new token ids): the tiny model through fcloop's own
    loader and tokenizer, anything else as gemma-2-2b."""
    if config.model.path == TINY_PATH:
        tokenizer = load_tokenizer(config.model)
        new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction)
        model_config = dataclasses.replace(config.model, attn_implementation=attention)
        model = load_model(model_config, len(tokenizer), dtype, device, config.run.seed)
        vocab_size = len(tokenizer)
    elif "gemma-2-2b" in config.model.path:
        torch.manual_seed(config.run.seed)
        model = gemma2_2b_model(attention, dtype, device)
        new_token_ids = list(range(GEMMA2_2B_VOCAB, GEMMA2_2B_VOCAB + NEW_TOKENS))
        vocab_size = GEMMA2_2B_VOCAB + NEW_TOKENS
    else:
        raise SystemExit(f"model.path {config.model.path!r}: the benchmark builds gemma-2-2b or {TINY_PATH!r} only")
    add_token_rows(model, vocab_size, new_token_ids)
    return model, new_token_ids


def recipe_lora(model: nn.Module, config: Config) -> nn.Module:
    """The recipe's LoRA as TRL's SFTTrainer applies it: peft's get_peft_model with the notebook's targets,
    no fcloop trainable-token rows; what trains is what peft marks trainable."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=16,
        lora_alpha=64,
        lora_dropout=0.05,
        target_modules=list(RECIPE_LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    # The same two peft warnings as fcloop's own LoRA (fcloop.model.lora): the recipe too adapts the tied lm_head.
    with peft_warnings_that_do_not_apply():
        return get_peft_model(model, lora)


def adamw(trainable: list[tuple[str, nn.Parameter]], train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """The optimizer exactly as fcloop.training.loop.train builds it (fused on CUDA)."""
    return torch.optim.AdamW(
        parameter_groups(trainable, train.weight_decay),
        lr=train.lr,
        betas=tuple(train.adam_betas),
        fused=device.type == "cuda",
    )
