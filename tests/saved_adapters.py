"""Adapters as training saves them, for the export tests: a tiny random model whose every trainable tensor was
moved well away from its init, so that an export which lost one of them would change the logits visibly."""

from __future__ import annotations

from pathlib import Path

import torch

from fcloop.config import load_config
from fcloop.data.tokenization import prepare_tokenizer
from fcloop.model.load import load_model, load_tokenizer
from fcloop.model.lora import add_token_rows, apply_lora
from fcloop.training.loop import save_final

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def perturb_trainables(model, scale: float) -> None:
    """Move every trainable tensor away from its init (LoRA B starts at zero, token rows at their originals)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def saved_adapter(folder: Path, overrides: list[str], scale: float = 0.02):
    """(final/ folder, the in-memory adapter model saved there, its tokenizer): configs/tiny.toml with
    `overrides`, the tags made tokens or not as `data.tags_as_tokens` says, trainables moved by `scale`."""
    config = load_config(
        CONFIGS / "tiny.toml", [f"--run.out_dir={folder / 'run'}", "--train.precision=fp32", *overrides]
    )
    tokenizer = load_tokenizer(config.model)
    new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    model = load_model(config.model, len(tokenizer), torch.float32, torch.device("cpu"), config.run.seed)
    add_token_rows(model, len(tokenizer), new_token_ids)
    model = apply_lora(model, config.lora, new_token_ids)
    perturb_trainables(model, scale)
    model.eval()
    final = folder / "run" / "final"
    save_final(final, model, tokenizer, config)
    return final, model, tokenizer
