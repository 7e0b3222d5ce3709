"""`python -m fcloop.export SOURCE [--merge OUT] [--gguf OUT.gguf [--gguf-type f32|f16|bf16|q8_0]] [--overwrite]`

Exports a trained model for use outside fcloop. SOURCE is the final/ folder training writes (PEFT adapter,
tokenizer, config.toml) or a merged folder this command wrote. `--merge OUT` writes
the adapter merged into its base model (safetensors, config, tokenizer with its chat template), loadable by
plain transformers without peft, computing the same logits. `--gguf OUT.gguf` writes one GGUF file for
llama.cpp and Ollama (fcloop/model/gguf_file.py). Outputs must be new (`--overwrite` replaces them), never inside
SOURCE, and are written under a temporary name and renamed when complete.

Why not only `merge_and_unload`: Gemma ties lm_head to the input embedding. A LoRA on lm_head merged into
the shared weight would also change the input embeddings, and peft leaves the tied trainable-token wrapper
of lm_head in place. So lm_head is first replaced by one plain linear layer holding the adapted lm_head's
exact weight (LoRA and new-token rows included), and the rest is merged by peft; the embedding keeps its
own weight with the new-token rows. The two are tied again only where they came out equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from fcloop.errors import run_cli
from fcloop.model.gguf_file import GGUF_TYPES, WrittenGGUF, write_gguf
from fcloop.outputs import refuse_overwrite, written_atomically

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.export", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "source", type=Path, help="an adapter folder (final/: PEFT adapter, tokenizer, config.toml) or a merged folder"
    )
    parser.add_argument("--merge", type=Path, metavar="OUT", help="write the merged model (a folder) here")
    parser.add_argument("--gguf", type=Path, metavar="OUT.gguf", help="write a GGUF file for llama.cpp here")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="the merged folder's weight dtype (merged in fp32)",
    )
    parser.add_argument(
        "--gguf-type", choices=GGUF_TYPES, default="f16", help="the GGUF's weight type (norms stay f32); default f16"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an output that exists")
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


def is_adapter_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def source_problem(folder: Path) -> str | None:
    """Why `folder` cannot be exported, or None: an adapter folder needs the config.toml training saves beside it
    (it names the base model), a merged folder its config.json and tokenizer."""
    if is_adapter_folder(folder):
        if not (folder / "config.toml").exists():
            return (
                f"{folder}: an adapter without the config.toml that training saves beside it (it names the base model)"
            )
        return None
    if not (folder / "config.json").exists():
        return (
            f"{folder}: no model in it (no adapter_config.json, no config.json); expected a final/ folder written by "
            "fcloop.train or a merged folder written by fcloop.export (python -m fcloop.export RUN/final --merge OUT)"
        )
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        return f"{folder}: a model folder without its tokenizer (no tokenizer.json)"
    return None


def vllm_note(adapter_config: dict) -> str:
    """What vLLM can serve of an adapter: it refuses LoRA adapters that train token rows or carry modules_to_save
    (vllm #36501), which `data.tags_as_tokens = true` makes; those are served merged."""
    token_rows = adapter_config.get("trainable_token_indices") or {}
    whole_modules = adapter_config.get("modules_to_save") or []
    if token_rows or whole_modules:
        what = "trains token rows (the tags as new tokens)" if token_rows else f"saves whole modules {whole_modules}"
        return f"vLLM: this adapter {what}, which vLLM refuses in a LoRA adapter; serve the merged folder (--merge)"
    return (
        "vLLM: this adapter has no token rows and no modules_to_save (what vLLM refuses in a LoRA adapter), so it "
        "can be tried as a LoRA (--enable-lora); the merged folder (--merge) always serves"
    )


def merged_model(source: Path):
    """(plain transformers model in fp32 on the CPU, tokenizer) from an adapter folder (merged here, as its
    config.toml builds the base model) or a merged folder."""
    if is_adapter_folder(source):
        from fcloop.config import load_config
        from fcloop.eval import load_inference_model

        config = load_config(source / "config.toml")
        model, tokenizer = load_inference_model(config, source, torch.float32, torch.device("cpu"))
        return merge_adapter(model), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(source)


def export_merged(adapter: Path, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Load ADAPTER's base model and adapter as its config.toml says, merge in fp32, save to OUT."""
    merged, tokenizer = merged_model(adapter)
    save_merged(merged.to(dtype), tokenizer, out)
    return out


def save_merged(merged: nn.Module, tokenizer, out: Path) -> None:
    prepare_for_inference(merged, tokenizer)
    with written_atomically(out) as partial:
        merged.save_pretrained(partial)  # safetensors: the default, and the only format of transformers >= 5
        tokenizer.save_pretrained(partial)


def save_gguf(merged: nn.Module, tokenizer, out: Path, gguf_type: str) -> WrittenGGUF:
    with written_atomically(out) as partial:
        return write_gguf(merged, tokenizer, partial, gguf_type, name=out.stem)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.merge is None and args.gguf is None:
        parser.error("name an output: --merge OUT (a merged model folder) and/or --gguf OUT.gguf")
    problem = source_problem(args.source)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # Before the minutes of loading and merging: no output over what exists, none inside the source.
    outputs = [out for out in (args.merge, args.gguf) if out is not None]
    for out in outputs:
        refuse_overwrite(out, args.overwrite, reads=[args.source])
    if args.merge is not None and args.gguf is not None and args.merge.resolve() == args.gguf.resolve():
        parser.error("--merge and --gguf name the same path")
    merged, tokenizer = merged_model(args.source)
    if is_adapter_folder(args.source):
        print(vllm_note(json.loads((args.source / "adapter_config.json").read_text(encoding="utf-8"))))
    if args.gguf is not None:
        # First: it reads the fp32 weights, before --dtype may narrow them for the merged folder.
        for line in save_gguf(merged, tokenizer, args.gguf, args.gguf_type).lines():
            print(line)
        print(f"wrote the GGUF ({args.gguf_type}) to {args.gguf}; run it with `llama-server --jinja -m {args.gguf}`")
    if args.merge is not None:
        save_merged(merged.to(DTYPES[args.dtype]), tokenizer, args.merge)
        print(f"wrote the merged model to {args.merge}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
