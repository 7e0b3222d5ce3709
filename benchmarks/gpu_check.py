"""Flex attention on the GPU gives eager attention's numbers: loss, final hidden states, every LoRA gradient.

    python -m benchmarks.gpu_check --json OUT.json                  # gemma-2-2b shapes, bf16, on CUDA
    python -m benchmarks.gpu_check --device cpu --tiny --json OUT   # the tiny model in fp32 (a CPU test)

gemma-2-2b's architecture with random weights (nothing to download), q_proj scaled so that Gemma-2's
attention softcap (50) binds, LoRA on every projection and lm_head with B non-zero (so A gets gradients),
no dropout. Two packed rows of several documents, one longer than the sliding window (4096), run through
`fcloop.training.loop.forward_loss` with activation checkpointing, as the loop trains: once with eager attention and
per-document dense masks (the reference), then with flex attention and per-document block masks: flex
compiled by transformers (layers eager), then with every decoder layer compiled (`train.compile`). Each
variant's loss, final hidden states and gradients are compared with the reference by relative error
(||a - b|| / ||b||, per tensor) against the tolerances below; the JSON holds every number, and the exit
status is 1 if any comparison fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from torch import nn

from benchmarks.models import gemma2_2b_model
from fcloop.config import LoraConfig, ModelConfig
from fcloop.data.packing import Batch, collate
from fcloop.data.tokenization import IGNORE_INDEX, Encoded
from fcloop.model.compile import compile_for_training
from fcloop.model.load import base_config, enable_activation_checkpointing, load_model, model_parts
from fcloop.model.lora import apply_lora, select_trainable
from fcloop.model.tiny import TINY_PATH
from fcloop.training.loop import forward_loss

# Tolerances on relative errors, by precision: bf16 rounds to 8 mantissa bits at every layer boundary, and
# flex and eager order the softmax's sums differently; a real bug (a wrong mask, a missing softcap, garbage
# gradients) is off by tens of percent or more.
TOLERANCES = {
    "bf16": {"loss": 1e-2, "hidden": 3e-2, "gradient": 5e-2},
    "fp32": {"loss": 1e-5, "hidden": 1e-4, "gradient": 1e-3},
}
GEMMA_ROWS = ((4400, 208), (1500, 1100, 900, 700, 408))  # 4608 tokens each; 4400 > the window of 4096
TINY_ROWS = ((70, 30, 28), (40, 50, 38))  # 128 tokens each; the tiny model's window is 24
GEMMA_QUERY_SCALE = 60.0  # random-init scores have a std near 1 (estimate); x60 puts many past the softcap of 50
TINY_QUERY_SCALE = 30.0
TINY_SOFTCAP = 1.0  # the tiny model's scores stay small even scaled: a low cap binds
LORA = LoraConfig(r=16, alpha=64, dropout=0.0)  # every projection and lm_head; no dropout: deterministic
LORA_B_STD = 0.02


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def packed_rows(rows: Sequence[Sequence[int]], vocab: int, seed: int) -> Batch:
    """Random-token documents of the given lengths packed into rows; the trailing third of each supervised."""
    generator = torch.Generator().manual_seed(seed)
    packed = []
    for lengths in rows:
        docs = []
        for length in lengths:
            ids = tuple(torch.randint(5, vocab, (length,), generator=generator).tolist())
            start = length - length // 3
            docs.append(Encoded(ids, (IGNORE_INDEX,) * start + ids[start:], "random", len(docs)))
        packed.append(docs)
    return collate(packed, pad_token_id=0)


def build_model(tiny: bool, dtype: torch.dtype, device: torch.device, seed: int) -> nn.Module:
    """The frozen base with activation checkpointing, q_proj scaled so the softcap binds, then LoRA."""
    torch.manual_seed(seed)
    if tiny:
        model = load_model(ModelConfig(path=TINY_PATH, attn_implementation="eager"), 300, dtype, device, seed)
    else:
        model = gemma2_2b_model("eager", dtype, device)
    scale = TINY_QUERY_SCALE if tiny else GEMMA_QUERY_SCALE
    for layer in model.model.layers:
        if tiny:
            layer.self_attn.attn_logit_softcapping = TINY_SOFTCAP  # read from the module at each forward
        with torch.no_grad():
            layer.self_attn.q_proj.weight.mul_(scale)
    enable_activation_checkpointing(model)
    model = apply_lora(model, LORA, [])
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in select_trainable(model):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, device=device) * LORA_B_STD)
    return model.train()


def softcap_binding(model: nn.Module, batch: Batch) -> dict:
    """How far past the softcap layer 0's attention scores go: the share of query-key scores (one head, the
    first 512 tokens, before rotary embedding, which keeps norms but not the exact dot products) whose
    magnitude exceeds half the cap, where tanh is already 8% below the identity."""
    attention = model_parts(model).decoder.layers[0].self_attn
    captured = {}
    handles = [
        getattr(attention, name).register_forward_hook(lambda m, a, out, name=name: captured.__setitem__(name, out))
        for name in ("q_proj", "k_proj")
    ]
    config = base_config(model)
    try:
        with torch.no_grad():
            model_parts(model).decoder(input_ids=batch.input_ids[:1, :512], position_ids=batch.position_ids[:1, :512])
    finally:
        for handle in handles:
            handle.remove()
    head_dim = config.head_dim
    q = captured["q_proj"][0, :, :head_dim].float()
    k = captured["k_proj"][0, :, :head_dim].float()
    scores = (q @ k.T) * config.query_pre_attn_scalar**-0.5
    cap = attention.attn_logit_softcapping
    beyond = float((scores.abs() > cap / 2).float().mean())
    return {"softcap": cap, "score_std": float(scores.std()), "share_beyond_half_cap": beyond}


def run_variant(model: nn.Module, batch: Batch, precision: str, device: torch.device, attention: str) -> dict:
    """Loss, final hidden states and gradients of one forward/backward through the loop's forward_loss."""
    base_config(model)._attn_implementation = attention  # read at each forward: same weights, other kernel
    captured = {}
    handle = model_parts(model).decoder.register_forward_hook(
        lambda module, args, output: captured.__setitem__("hidden", output.last_hidden_state.detach().float())
    )
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    started = time.perf_counter()
    try:
        loss_sum, count = forward_loss(model, batch, precision, device)
        loss = loss_sum / count
        gradients = torch.autograd.grad(loss, [p for _, p in trainable])
    finally:
        handle.remove()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "loss": loss.detach().float(),
        "hidden": captured["hidden"],
        "gradients": {name: g.float() for (name, _), g in zip(trainable, gradients, strict=True)},
        "seconds": time.perf_counter() - started,
    }


def compare(variant: dict, reference: dict, tolerances: dict) -> dict:
    """Relative errors of a variant against the reference, each with its tolerance and verdict."""
    loss_error = relative_error(variant["loss"], reference["loss"])
    hidden_error = relative_error(variant["hidden"], reference["hidden"])
    per_tensor = {
        name: relative_error(gradient, reference["gradients"][name]) for name, gradient in variant["gradients"].items()
    }
    worst = max(per_tensor, key=lambda name: per_tensor[name] if per_tensor[name] == per_tensor[name] else 1e300)
    gradients_ok = variant["gradients"].keys() == reference["gradients"].keys() and all(
        error <= tolerances["gradient"]
        for error in per_tensor.values()  # NaN compares False: not ok
    )
    return {
        "loss": {
            "value": float(variant["loss"]),
            "reference": float(reference["loss"]),
            "relative_error": loss_error,
            "tolerance": tolerances["loss"],
            "ok": loss_error <= tolerances["loss"],
        },
        "hidden": {
            "relative_error": hidden_error,
            "max_abs_error": float((variant["hidden"] - reference["hidden"]).abs().max()),
            "tolerance": tolerances["hidden"],
            "ok": hidden_error <= tolerances["hidden"],
        },
        "gradients": {
            "tensors": len(per_tensor),
            "worst": worst,
            "worst_relative_error": per_tensor[worst],
            "median_relative_error": sorted(per_tensor.values())[len(per_tensor) // 2],
            "tolerance": tolerances["gradient"],
            "ok": gradients_ok,
            "relative_errors": per_tensor,
        },
        "seconds": variant["seconds"],
    }


def passed(result: dict) -> bool:
    """A variant passes if it ran and its loss, hidden states and every gradient are within tolerance."""
    return "error" not in result and all(result[part]["ok"] for part in ("loss", "hidden", "gradients"))


def flex_variants(device: torch.device) -> list[tuple[str, str | None]]:
    """(name, backend the decoder layers compile with, or None for uncompiled layers)."""
    if device.type == "cpu":  # transformers' own flex compile (inductor) has no CPU backward
        return [("flex, compiled layers (aot_eager), checkpointing", "aot_eager")]
    return [
        ("flex compiled by transformers, eager layers, checkpointing", None),
        ("flex, compiled layers (inductor), checkpointing", "inductor"),
    ]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the report")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny Gemma-2 in fp32 instead of gemma-2-2b in bf16")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(list(argv))


def write(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    device = torch.device(args.device)
    # Flex under checkpointing must never fall back to its unfused code (fcloop.model.flex_attention): an error instead.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        report = check(args, device, "python -m benchmarks.gpu_check " + " ".join(argv))
    return 0 if report["ok"] else 1


def check(args: argparse.Namespace, device: torch.device, command: str) -> dict:
    """Build the model, run the reference and every flex variant, write the report after each; return it."""
    precision = "fp32" if args.tiny else "bf16"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    tolerances = TOLERANCES[precision]
    rows = TINY_ROWS if args.tiny else GEMMA_ROWS
    model = build_model(args.tiny, dtype, device, args.seed)
    batch = packed_rows(rows, base_config(model).vocab_size, args.seed).to(device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "command": command,
        "model": "tiny Gemma-2 (fcloop/model/tiny.py)" if args.tiny else "gemma-2-2b shapes, random weights",
        "precision": precision,
        "rows": [list(lengths) for lengths in rows],
        "sliding_window": base_config(model).sliding_window,
        "query_scale": TINY_QUERY_SCALE if args.tiny else GEMMA_QUERY_SCALE,
        "lora": {"r": LORA.r, "alpha": LORA.alpha, "targets": list(LORA.target_modules), "b_std": LORA_B_STD},
        "softcap_binding": softcap_binding(model, batch),
        "tolerances": tolerances,
        "reference": "eager attention, per-document dense masks, checkpointing",
        "variants": [],
        "ok": False,
    }
    path = Path(args.json)
    write(report, path)
    print(f"[gpu_check] reference: eager ({report['model']}, {precision})", flush=True)
    reference = run_variant(model, batch, precision, device, "eager")
    report["reference_loss"] = float(reference["loss"])
    for name, backend in flex_variants(device):
        print(f"[gpu_check] {name}", flush=True)
        if backend is not None:  # as the loop compiles (train.compile); on CPU this lets compiled flex train
            compile_for_training(model_parts(model).decoder, backend)
        try:
            variant = run_variant(model, batch, precision, device, "flex_attention")
            result = {"name": name, **compare(variant, reference, tolerances)}
        except Exception as error:  # recorded, so the report says which variant failed and how
            result = {"name": name, "error": f"{type(error).__name__}: {str(error)[:500]}"}
        report["variants"].append(result)
        report["ok"] = all(passed(variant) for variant in report["variants"])
        write(report, path)
        if "error" in result:
            print(f"[gpu_check]   error: {result['error']}", flush=True)
        else:
            errors = (result["loss"]["relative_error"], result["hidden"]["relative_error"])
            worst = result["gradients"]
            print(
                f"[gpu_check]   relative errors: loss {errors[0]:.2e}, hidden {errors[1]:.2e}, worst gradient "
                f"{worst['worst_relative_error']:.2e} ({worst['worst']})",
                flush=True,
            )
    print(f"[gpu_check] {'ok' if report['ok'] else 'FAILED'}; wrote {path}")
    return report


if __name__ == "__main__":
    sys.exit(main())
