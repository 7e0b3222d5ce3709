"""`python -m fcloop.export ADAPTER_DIR --merge OUT [--dtype float32|bfloat16] [--overwrite]`

Merges a trained adapter (a final/ folder: PEFT adapter, tokenizer, config.toml) into its base model and
writes OUT: safetensors weights, config and the tokenizer with its chat template, loadable by plain
transformers without peft. The merged model computes the same logits as the adapter model. OUT must be new or
empty (`--overwrite` replaces it) and never the adapter's folder; it is written as OUT.partial and renamed.

Why not only `merge_and_unload`: Gemma ties lm_head to the input embedding. A LoRA on lm_head merged into
the shared weight would also change the input embeddings, and peft leaves the tied trainable-token wrapper
of lm_head in place. So lm_head is first replaced by one plain linear layer holding the adapted lm_head's
exact weight (LoRA and new-token rows included), and the rest is merged by peft; the embedding keeps its
own weight with the new-token rows. The two are tied again only where they came out equal.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from fcloop.errors import run_cli
from fcloop.outputs import refuse_overwrite, written_atomically

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.export", description=__doc__.split("\n\n")[1])
    parser.add_argument("adapter", type=Path, help="a final/ folder: PEFT adapter, tokenizer and config.toml")
    parser.add_argument("--merge", type=Path, required=True, metavar="OUT", help="write the merged model here")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the saved weights (merged in fp32)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    return parser


@torch.no_grad()
def effective_linear_weight(module: nn.Module, in_features: int) -> torch.Tensor:
    """The [out, in] weight of a bias-free linear map, read off by applying it to the identity: whatever
    adapters wrap the module, this is exactly the matrix it multiplies by."""
    probe = next(module.parameters())
    identity = torch.eye(in_features, dtype=probe.dtype, device=probe.device)
    return module(identity).T.contiguous()


def is_plain_linear(module: nn.Module) -> bool:
    return type(module) is nn.Linear


def replace_adapted_lm_head(model) -> None:
    """If the lm_head of a PEFT model carries adapters, swap it for a plain untied nn.Linear computing the
    same map; a plain lm_head is left as it is."""
    base = model.get_base_model()
    head = base.get_output_embeddings()
    if is_plain_linear(head):
        return
    in_features = base.get_input_embeddings().weight.shape[1]
    weight = effective_linear_weight(head, in_features)
    plain = nn.Linear(in_features, weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
    plain.weight = nn.Parameter(weight, requires_grad=False)
    base.set_output_embeddings(plain)


def set_tied_embeddings(model_config, tied: bool) -> None:
    model_config.tie_word_embeddings = tied
    model_config.get_text_config().tie_word_embeddings = tied  # where multimodal configs keep it


def merge_adapter(model) -> nn.Module:
    """PEFT model -> plain transformers model with the same logits."""
    model.eval()
    was_tied = bool(model.get_base_model().config.get_text_config().tie_word_embeddings)
    replace_adapted_lm_head(model)
    with warnings.catch_warnings():
        # peft warns about merging into tied embeddings; the adapted lm_head was already taken out of the tie.
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*no longer tied.*", category=UserWarning)
        merged = model.merge_and_unload()
    leftovers = sorted({type(m).__name__ for m in merged.modules() if type(m).__module__.startswith("peft")})
    if leftovers:
        raise RuntimeError(f"peft modules are left after merging: {leftovers}")
    head, embedding = merged.get_output_embeddings(), merged.get_input_embeddings()
    # Tied again only where nothing adapted lm_head apart from the embedding (no LoRA on it, say).
    tied = was_tied and torch.equal(head.weight, embedding.weight)
    if tied:
        head.weight = embedding.weight
    set_tied_embeddings(merged.config, tied)
    return merged


def prepare_for_inference(model, tokenizer) -> None:
    """Settings a plain `generate` needs: the KV cache (training turns it off) and the turn end as a stop."""
    from fcloop.evaluation.generation import stop_token_ids

    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = stop_token_ids(tokenizer)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id


def export_merged(adapter: Path, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Load ADAPTER's base model and adapter as its config.toml says, merge in fp32, save to OUT."""
    from fcloop.config import load_config
    from fcloop.eval import load_inference_model

    config = load_config(adapter / "config.toml")
    model, tokenizer = load_inference_model(config, adapter, torch.float32, torch.device("cpu"))
    merged = merge_adapter(model).to(dtype)
    prepare_for_inference(merged, tokenizer)
    with written_atomically(out) as partial:
        merged.save_pretrained(partial)  # safetensors: the default, and the only format of transformers >= 5
        tokenizer.save_pretrained(partial)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    missing = [name for name in ("adapter_config.json", "config.toml") if not (args.adapter / name).exists()]
    if missing:
        print(
            f"error: {args.adapter}: no {' or '.join(missing)}; expected a final/ folder written by fcloop.train "
            f"(python -m fcloop.export RUN/final --merge OUT)",
            file=sys.stderr,
        )
        return 2
    refuse_overwrite(args.merge, args.overwrite, reads=[args.adapter])  # before the minutes of loading and merging
    out = export_merged(args.adapter, args.merge, DTYPES[args.dtype])
    print(f"wrote the merged model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
