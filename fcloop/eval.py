"""`python -m fcloop.eval CONFIG [--section.key=value ...] [--adapter DIR] [--data PATH] [--out DIR]`

Generates an answer for every assistant turn of the eval conversations (greedy, batched, with the KV cache,
stopping at `<end_of_turn>` / `<eos>`) and scores the tool calls. Writes DIR/predictions.jsonl (one object
per case: id, tools, expected, generated) and DIR/metrics.json, and prints the metrics.

A `bfcl:PATH[@N]` or `bfcl:CATEGORY[@N]` source (see `fcloop.evaluation.bfcl`) adds BFCL cases, scored by BFCL's
rules: metrics `bfcl/accuracy`, `bfcl/<category>` and their counts, and DIR/bfcl_predictions.jsonl (id,
category, prompt_tokens, too_long, expected, generated, correct, error).

`python -m fcloop.eval --score PRED.jsonl --out DIR` scores a predictions file alone, without a model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from fcloop.config import Config, ConfigError, load_config, split_overrides
from fcloop.errors import run_cli
from fcloop.evaluation.generation import write_predictions
from fcloop.hardware import Hardware, choose_precision, detect_hardware, native_bf16
from fcloop.outputs import refuse_overwrite, written_atomically

PREDICTIONS_FILE = "predictions.jsonl"
BFCL_PREDICTIONS_FILE = "bfcl_predictions.jsonl"
METRICS_FILE = "metrics.json"
# Any of these says that a folder holds a saved tokenizer (a final/ folder does; a step_ checkpoint does not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.eval", description=__doc__.split("\n\n")[1])
    parser.add_argument("config", nargs="?", help="TOML config file; keys can be overridden with --section.key=value")
    parser.add_argument("--adapter", type=Path, help="a final/ or step_NNNNNN/ folder holding a PEFT adapter")
    parser.add_argument(
        "--data",
        action="append",
        help="eval source(s) instead of data.eval (repeatable); bfcl:PATH[@N] or bfcl:CATEGORY[@N] for BFCL",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: run.out_dir/eval)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace predictions and metrics files already in the output folder"
    )
    parser.add_argument("--score", type=Path, metavar="PRED.jsonl", help="only score this predictions file")
    return parser


def inference_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def inference_dtype(precision: str, hardware: Hardware) -> tuple[torch.dtype, str]:
    """(dtype, reason): train.precision as training resolves it on this machine (fcloop.hardware), so a
    native-bf16 CPU evaluates in bf16 as it trains; but bf16 only where it is native, even when set: emulated
    bf16 (an AVX2 CPU) would be slow and change the numbers."""
    chosen, reason = choose_precision(precision, hardware)
    if chosen == "bf16" and native_bf16(hardware) is None:
        return torch.float32, "precision fp32: bf16 is not native here (evaluation uses it only where it is)"
    return (torch.bfloat16 if chosen == "bf16" else torch.float32), reason


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).exists() for name in TOKENIZER_FILES)


def require_adapter(adapter: Path) -> None:
    if not (adapter / "adapter_config.json").exists():
        raise ConfigError(
            f"--adapter {adapter}: no adapter_config.json there; expected a final/ or step_NNNNNN/ folder "
            "written by fcloop.train"
        )


def load_inference_model(config: Config, adapter: Path | None, dtype: torch.dtype, device: torch.device):
    """(model, tokenizer): the base model built exactly as training builds it (same tokens added, same new
    rows), with the PEFT adapter from `adapter` on top when given. The tokenizer is the adapter folder's
    when it has one (it is what training saved), else the config's, prepared as in training."""
    from fcloop.data.tokenization import prepare_tokenizer
    from fcloop.model.load import load_model, load_tokenizer
    from fcloop.model.lora import add_token_rows, peft_warnings_that_do_not_apply
    from fcloop.training.checkpoint import verify_folder

    if adapter is not None:
        require_adapter(adapter)
        verify_folder(adapter)  # never load a damaged adapter (a bad copy, a failing disk)
    tokenizer = load_tokenizer(config.model)
    # The new-token ids are needed even when the adapter brings its tokenizer: training initialized those rows
    # (the mean of the old rows), and an adapter that does not train them relies on that initialization.
    new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    if adapter is not None and has_tokenizer(adapter):
        from transformers import AutoTokenizer

        saved = AutoTokenizer.from_pretrained(adapter)
        if len(saved) != len(tokenizer):
            raise ConfigError(
                f"{adapter}: its tokenizer has {len(saved)} tokens, but the config's tokenizer prepared as in "
                f"training has {len(tokenizer)}; was the adapter trained with another model.tokenizer?"
            )
        tokenizer = saved
    model = load_model(config.model, len(tokenizer), dtype, device, config.run.seed)
    add_token_rows(model, len(tokenizer), new_token_ids)
    if adapter is not None:
        from peft import PeftModel

        with peft_warnings_that_do_not_apply():
            model = PeftModel.from_pretrained(model, adapter)
        # peft loads the adapter's weights in fp32 whatever the model's dtype, so in a bf16 model every LoRA product
        # would convert its input to fp32 and its output back. Training's bf16 autocast computes these products in
        # bf16, so the adapter follows the model: the same arithmetic as training, without the conversions
        # (benchmarks/README.md, "Batched generation on a CPU", has what that saves).
        for parameter in model.parameters():
            if parameter.is_floating_point() and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
    model.eval()
    return model, tokenizer


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    with written_atomically(path) as partial:
        partial.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def print_metrics(metrics: dict[str, Any]) -> None:
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        print(f"{name:<{width}}  {shown}")


def score_only(predictions: Path, out: Path) -> dict[str, Any]:
    from fcloop.evaluation.scoring import score_predictions_file

    metrics = score_predictions_file(predictions)
    write_metrics(out / METRICS_FILE, metrics)
    return metrics


def evaluate(config: Config, adapter: Path | None, sources: list[str] | None, out: Path) -> dict[str, Any]:
    """Generate and score every case of the eval data; write predictions and metrics under `out`.

    `sources` (from --data) replace data.eval, and then only they are evaluated: `--data bfcl:...` alone
    scores BFCL cases only, even where the config holds out data.eval_fraction of the training rows."""
    from fcloop.data.bfcl_cases import load_sources, split_sources

    conversation_sources, bfcl_sources = split_sources(sources or config.data.eval)
    bfcl_cases = load_sources(bfcl_sources)  # before the model, so that a wrong path fails at once
    device = inference_device()
    dtype, reason = inference_dtype(config.train.precision, detect_hardware(device))
    print(reason)
    model, tokenizer = load_inference_model(config, adapter, dtype, device)
    metrics: dict[str, Any] = {}
    if conversation_sources or not bfcl_cases or (not sources and config.data.eval_fraction > 0):
        metrics.update(evaluate_conversations(config, model, tokenizer, conversation_sources, device, dtype, out))
    if bfcl_cases:
        metrics.update(evaluate_bfcl_cases(config, model, tokenizer, bfcl_cases, device, dtype, out))
    write_metrics(out / METRICS_FILE, metrics)
    return metrics


def evaluate_conversations(config: Config, model, tokenizer, sources, device, dtype, out: Path) -> dict[str, Any]:
    """The tool-call scores of the eval conversations (`fcloop.evaluation.scoring`); writes out/predictions.jsonl."""
    from fcloop.data.load import load_eval_data
    from fcloop.evaluation.generation import build_cases, evaluate_tool_calls, too_long_warning

    conversations, stats = load_eval_data(
        dataclasses.replace(config.data, eval=tuple(sources)), tokenizer, config.run.seed
    )
    print("eval data:\n  " + "\n  ".join(stats.lines()))
    cases = build_cases(conversations, config.eval.max_cases)
    if warning := too_long_warning(cases, tokenizer, config.eval.max_new_tokens):
        print(warning, file=sys.stderr)
    print(f"generating {len(cases)} cases on {device} ({dtype})...", flush=True)
    metrics, records = evaluate_tool_calls(
        model, tokenizer, cases, config.data.think_instruction, config.eval.max_new_tokens, config.eval.batch_size,
        device, progress=True, constrain_calls=config.eval.constrain_calls,
    )  # fmt: skip
    write_predictions(out / PREDICTIONS_FILE, records)
    print(f"wrote {out / PREDICTIONS_FILE}")
    return metrics


def evaluate_bfcl_cases(config: Config, model, tokenizer, cases, device, dtype, out: Path) -> dict[str, Any]:
    """The BFCL scores of the `bfcl:` cases (`fcloop.evaluation.bfcl`); writes out/bfcl_predictions.jsonl."""
    from fcloop.evaluation.bfcl import describe, evaluate_bfcl, prompt_limit, warnings_for

    think, max_new_tokens = config.data.think_instruction, config.eval.max_new_tokens
    limit = prompt_limit(model, config.data.max_seq_len)
    for warning in warnings_for(cases, tokenizer, think, limit, max_new_tokens):
        print(warning, file=sys.stderr)
    print(describe(cases))
    print(f"generating {len(cases)} BFCL cases on {device} ({dtype})...", flush=True)
    if config.eval.constrain_calls:
        print("tool calls held to each case's tools while generated (eval.constrain_calls = true)")
    metrics, records = evaluate_bfcl(
        model, tokenizer, cases, think, max_new_tokens, config.eval.batch_size, device, limit, progress=True,
        constrain_calls=config.eval.constrain_calls,
    )  # fmt: skip
    write_predictions(out / BFCL_PREDICTIONS_FILE, records)
    print(f"wrote {out / BFCL_PREDICTIONS_FILE}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    overrides, rest = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if args.score is not None:
        if args.out is None:
            parser.error("--score needs --out DIR")
        refuse_overwrite(args.out, args.overwrite, names=[METRICS_FILE])
        try:
            metrics = score_only(args.score, args.out)
        except (OSError, ValueError) as error:  # a missing file, or a bad line (named with its number)
            print(error, file=sys.stderr)
            return 2
    else:
        if args.config is None:
            parser.error("CONFIG is required unless --score is given")
        try:
            config = load_config(args.config, overrides)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)  # the prefix of every command's expected failures
            return 2
        out = args.out if args.out is not None else Path(config.run.out_dir) / "eval"
        # Checked before the model loads: the files this command writes, never in the adapter's folder.
        if args.adapter is not None:
            require_adapter(args.adapter)  # a wrong --adapter is named as such, before the output is checked
        reads = [args.adapter] if args.adapter is not None else []
        refuse_overwrite(out, args.overwrite, reads, names=[PREDICTIONS_FILE, BFCL_PREDICTIONS_FILE, METRICS_FILE])
        metrics = evaluate(config, args.adapter, args.data, out)
        print(f"wrote {out / METRICS_FILE}")
    print_metrics(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
