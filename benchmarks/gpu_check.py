"""Flex attention on the GPU gives eager attention's numbers: loss, final hidden states, every LoRA gradient.

    python -m benchmarks.gpu_check --json OUT.json                  # gemma-2-2b shapes, fp32 and bf16, on CUDA
    python -m benchmarks.gpu_check --device cpu --tiny --json OUT   # the tiny model, fp32 and bf16 (a CPU test)

gemma-2-2b's architecture with random weights (nothing to download), q_proj scaled so that Gemma-2's
attention softcap (50) binds, LoRA on every projection and lm_head with B non-zero (so A gets gradients),
no dropout. Two packed rows of several documents, one longer than the sliding window (4096), run through
`fcloop.training.loop.forward_loss` with activation checkpointing, as the loop trains. The truth is eager
attention with per-document dense masks in fp32 (the bf16 model's weights, upcast). Then flex attention with
per-document block masks, compiled by transformers (layers eager) and with every decoder layer compiled
(`train.compile`), in each precision of `--precisions`:
- fp32: within tight tolerances of the truth (a wrong mask, softcap or gradient is off by far more);
- bf16: eager attention in bf16 is run too, as the yardstick; flex in bf16 must be within the bf16 tolerance of
  the fp32 truth or no further from it than BF16_MARGIN times eager's error (see BF16_MARGIN).
Errors are relative (||a - b|| / ||b||, per tensor); the JSON holds every number, and the exit status is 1 if
any comparison fails.
"""

from __future__ import annotations

import argparse
import copy
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
# A bf16 run is judged against the fp32 truth beside eager attention in bf16: with the softcap binding, eager
# computes its scores in bf16 (0.25 apart near the cap of 50, a 28% step in a softmax weight), and random weights
# amplify such rounding through 26 layers (measured on an H200: eager bf16 and flex bf16 then differ by 48% in the
# final hidden states, while the two flex variants agree). Flex in bf16 passes where it is within the tolerance of
# the truth, or no further from it than BF16_MARGIN times eager's own error on the same measure.
BF16_MARGIN = 1.25
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


def compare(variant: dict, truth: dict, tolerances: dict, yardstick: dict | None = None) -> dict:
    """Relative errors of a run against the truth, each with its limit and verdict. The limit is the
    tolerance; with a `yardstick` (eager attention's comparison in the same precision), it is the larger of the
    tolerance and BF16_MARGIN times eager's error on the same measure (per gradient tensor for gradients)."""

    def limit(tolerance: float, eager_error: float | None) -> float:
        return tolerance if eager_error is None else max(tolerance, BF16_MARGIN * eager_error)

    def eager(measure: str) -> float | None:
        return None if yardstick is None else yardstick[measure]["relative_error"]

    loss_error = relative_error(variant["loss"], truth["loss"])
    hidden_error = relative_error(variant["hidden"], truth["hidden"])
    per_tensor = {
        name: relative_error(gradient, truth["gradients"][name]) for name, gradient in variant["gradients"].items()
    }
    eager_per_tensor = None if yardstick is None else yardstick["gradients"]["relative_errors"]
    limits = {
        name: limit(tolerances["gradient"], None if eager_per_tensor is None else eager_per_tensor[name])
        for name in per_tensor
    }
    # The tensor furthest past its limit (NaN first: it compares False with everything).
    worst = max(
        per_tensor, key=lambda name: per_tensor[name] / limits[name] if per_tensor[name] == per_tensor[name] else 1e300
    )
    gradients_ok = variant["gradients"].keys() == truth["gradients"].keys() and all(
        per_tensor[name] <= limits[name]
        for name in per_tensor  # NaN compares False: not ok
    )
    loss_limit, hidden_limit = limit(tolerances["loss"], eager("loss")), limit(tolerances["hidden"], eager("hidden"))
    return {
        "loss": {
            "value": float(variant["loss"]),
            "truth": float(truth["loss"]),
            "relative_error": loss_error,
            "limit": loss_limit,
            "ok": loss_error <= loss_limit,
        },
        "hidden": {
            "relative_error": hidden_error,
            "max_abs_error": float((variant["hidden"] - truth["hidden"]).abs().max()),
            "limit": hidden_limit,
            "ok": hidden_error <= hidden_limit,
        },
        "gradients": {
            "tensors": len(per_tensor),
            "worst": worst,
            "worst_relative_error": per_tensor[worst],
            "worst_limit": limits[worst],
            "median_relative_error": sorted(per_tensor.values())[len(per_tensor) // 2],
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
    parser.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma list: fp32 (flex against the fp32 truth, tight), bf16 (flex in bf16 against the same truth, "
        "no further from it than eager in bf16 is); default both",
    )
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
    """Build the model, run the fp32 truth and every variant in each precision, write the report after each
    variant; return it."""
    precisions = [name for name in args.precisions.split(",") if name]
    unknown = sorted(set(precisions) - set(TOLERANCES))
    if unknown or not precisions:
        raise SystemExit(f"--precisions {args.precisions!r}: choose from fp32, bf16 (comma-separated)")
    rows = TINY_ROWS if args.tiny else GEMMA_ROWS
    working_dtype = torch.bfloat16 if "bf16" in precisions else torch.float32
    model = build_model(args.tiny, working_dtype, device, args.seed)
    # The truth: the same weights in fp32 (bf16 values are exact in fp32), eager attention, no autocast.
    truth_model = copy.deepcopy(model).float() if working_dtype != torch.float32 else model
    models = {"fp32": truth_model, "bf16": model}
    batch = packed_rows(rows, base_config(model).vocab_size, args.seed).to(device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "command": command,
        "model": "tiny Gemma-2 (fcloop/model/tiny.py)" if args.tiny else "gemma-2-2b shapes, random weights",
        "rows": [list(lengths) for lengths in rows],
        "sliding_window": base_config(model).sliding_window,
        "query_scale": TINY_QUERY_SCALE if args.tiny else GEMMA_QUERY_SCALE,
        "lora": {"r": LORA.r, "alpha": LORA.alpha, "targets": list(LORA.target_modules), "b_std": LORA_B_STD},
        "softcap_binding": softcap_binding(model, batch),
        "tf32_matmuls": device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32,
        "truth": "eager attention in fp32 (the same weights), per-document dense masks, checkpointing",
        "bf16_margin": BF16_MARGIN,
        "precisions": {},
        "ok": False,
    }
    path = Path(args.json)
    write(report, path)
    print(f"[gpu_check] truth: eager in fp32 ({report['model']})", flush=True)
    truth = run_variant(truth_model, batch, "fp32", device, "eager")
    report["truth_loss"] = float(truth["loss"])
    for precision in precisions:
        part = {"tolerances": TOLERANCES[precision], "variants": []}
        report["precisions"][precision] = part
        yardstick = None
        if precision != "fp32":
            # What bf16 costs the path everyone trusts: eager attention in bf16 against the same fp32 truth.
            print(f"[gpu_check] eager in {precision} (the yardstick)", flush=True)
            eager = run_variant(models[precision], batch, precision, device, "eager")
            yardstick = compare(eager, truth, TOLERANCES[precision])
            part["eager"] = {"name": f"eager, {precision}", **yardstick}
            print_errors(part["eager"])
        for name, backend in flex_variants(device):
            name = f"{name}, {precision}"
            print(f"[gpu_check] {name}", flush=True)
            if backend is not None:  # as the loop compiles (train.compile); on CPU this lets compiled flex train
                compile_for_training(model_parts(models[precision]).decoder, backend)
            try:
                variant = run_variant(models[precision], batch, precision, device, "flex_attention")
                result = {"name": name, **compare(variant, truth, TOLERANCES[precision], yardstick)}
            except Exception as error:  # recorded, so the report says which variant failed and how
                result = {"name": name, "error": f"{type(error).__name__}: {str(error)[:500]}"}
            part["variants"].append(result)
            report["ok"] = all(
                passed(variant) for each in report["precisions"].values() for variant in each["variants"]
            )
            write(report, path)
            print_errors(result)
    print(f"[gpu_check] {'ok' if report['ok'] else 'FAILED'}; wrote {path}")
    return report


def print_errors(result: dict) -> None:
    if "error" in result:
        print(f"[gpu_check]   error: {result['error']}", flush=True)
        return
    worst = result["gradients"]
    print(
        f"[gpu_check]   relative errors to the truth: loss {result['loss']['relative_error']:.2e}, hidden "
        f"{result['hidden']['relative_error']:.2e}, gradients median {worst['median_relative_error']:.2e}, worst "
        f"{worst['worst_relative_error']:.2e} ({worst['worst']})",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
