"""Batched greedy generation on a CPU: fcloop's `generate` beside the same without each of its two speed fixes.

    python -m benchmarks.generation                        # the demo's model and its trained adapter (minutes)
    python -m benchmarks.generation --config configs/tiny.toml --cases 4 --batch-size 4 --new-tokens 4 --rounds 1

Variants, on one loaded model in one process, alternating within each round on the same prompts:
- `fcloop`: `fcloop.evaluation.generation.generate` as evaluation runs it;
- `strided_head_input`: the same without `contiguous_head_input`, so the output layer gets the prefill's strided
  view of the last positions (torch then copies the output weight once per row);
- `fp32_adapter`: the adapter's weights in fp32, as peft loads them (only with an adapter in a bf16 model).
The prompts are the eval cases of the config's `data.eval` (the first `--cases`, as the demo's evaluation takes
them), at the config's precision on this CPU (`fcloop.eval.inference_dtype`). Each variant's texts are compared
with fcloop's: dropping the first fix changes no number; the second changes the adapter's rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shlex
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

import fcloop.evaluation.generation as generation
from benchmarks.cpu_step import machine, package_versions
from benchmarks.report import markdown_path_for, write_report
from fcloop.config import load_config, split_overrides
from fcloop.data.gemma_format import render
from fcloop.data.load import load_eval_data
from fcloop.eval import inference_dtype, load_inference_model
from fcloop.hardware import detect_hardware

DEFAULT_CONFIG = "configs/demo.toml"
RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "fcloop"


@contextlib.contextmanager
def strided_head_input(model) -> Iterator[None]:
    """`generate` without its contiguous-input hook on the output layer."""
    fixed = generation.contiguous_head_input
    generation.contiguous_head_input = lambda _model: contextlib.nullcontext()
    try:
        yield
    finally:
        generation.contiguous_head_input = fixed


@contextlib.contextmanager
def fp32_adapter(model) -> Iterator[None]:
    """The adapter's weights in fp32 while generating, restored (bitwise: bf16 -> fp32 -> bf16) afterwards."""
    adapter = [parameter for name, parameter in model.named_parameters() if "lora_" in name]
    dtypes = [parameter.dtype for parameter in adapter]
    for parameter in adapter:
        parameter.data = parameter.data.float()
    try:
        yield
    finally:
        for parameter, dtype in zip(adapter, dtypes, strict=True):
            parameter.data = parameter.data.to(dtype)


def variants_for(model, dtype: torch.dtype) -> dict:
    """name -> context manager factory; fp32_adapter only where it differs from fcloop."""
    has_adapter = any("lora_" in name for name, _ in model.named_parameters())
    variants = {REFERENCE: lambda _model: contextlib.nullcontext(), "strided_head_input": strided_head_input}
    if has_adapter and dtype != torch.float32:
        variants["fp32_adapter"] = fp32_adapter
    return variants


def eval_prompts(config, tokenizer, cases: int) -> list[str]:
    conversations, _ = load_eval_data(config.data, tokenizer, config.run.seed)
    chosen = generation.build_cases(conversations, cases)
    return [render(case.prompt, config.data.think_instruction, add_generation_prompt=True).text for case in chosen]


def measure(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    config = load_config(args.config, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    dtype, reason = inference_dtype(config.train.precision, detect_hardware(device))
    adapter = Path(args.adapter) if args.adapter else None
    model, tokenizer = load_inference_model(config, adapter, dtype, device)
    prompts = eval_prompts(config, tokenizer, args.cases)
    prompt_tokens = [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts]
    variants = variants_for(model, dtype)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    texts: dict[str, list[str]] = {}
    for round_index in range(args.rounds):
        for name, variant in variants.items():
            with variant(model):
                start = time.perf_counter()
                texts[name] = generation.generate(model, tokenizer, prompts, args.new_tokens, args.batch_size, device)
                seconds[name].append(time.perf_counter() - start)
            print(f"[generation] round {round_index + 1}/{args.rounds}: {name} {seconds[name][-1]:.1f} s", flush=True)
    reference = statistics.median(seconds[REFERENCE])
    return {
        "machine": machine(torch.get_num_threads()),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.generation " + shlex.join(argv),
        "config": args.config,
        "model": config.model.path,
        "adapter": args.adapter,
        "dtype": str(dtype).removeprefix("torch."),
        "dtype_reason": reason,
        "versions": package_versions(),
        "cases": len(prompts),
        "prompt_tokens": {"min": min(prompt_tokens), "max": max(prompt_tokens), "sum": sum(prompt_tokens)},
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "variants": {
            name: {
                "seconds": [round(value, 2) for value in seconds[name]],
                "median_s": round(statistics.median(seconds[name]), 2),
                "times_fcloop": round(statistics.median(seconds[name]) / reference, 2),
                "same_texts_as_fcloop": texts[name] == texts[REFERENCE],
                "texts_differing": sum(a != b for a, b in zip(texts[name], texts[REFERENCE], strict=True)),
            }
            for name in variants
        },
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Batched greedy generation, {report['machine']['cpu']}",
        "",
        f"{report['date']}; `{report['command']}`; {report['dtype']} ({report['dtype_reason']}); "
        f"{report['cases']} cases ({report['prompt_tokens']['min']}-{report['prompt_tokens']['max']} prompt tokens), "
        f"batch {report['batch_size']}, {report['new_tokens']} new tokens at most, {report['rounds']} round(s); "
        f"CPU flags {', '.join(flag for flag, present in report['machine']['flags'].items() if present) or '-'}.",
        "",
        "| variant | median s | x fcloop | same texts as fcloop |",
        "|---|---|---|---|",
    ]
    for name, variant in report["variants"].items():
        same = "yes" if variant["same_texts_as_fcloop"] else f"no ({variant['texts_differing']} differ)"
        lines.append(f"| {name} | {variant['median_s']} | {variant['times_fcloop']} | {same} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generation", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"fcloop TOML ({DEFAULT_CONFIG}); --section.key=value")
    parser.add_argument("--adapter", help="a final/ folder with a PEFT adapter (default: the base model)")
    parser.add_argument("--cases", type=int, default=16, help="eval cases, the first ones (16)")
    parser.add_argument("--batch-size", type=int, default=16, help="generation batch (16)")
    parser.add_argument("--new-tokens", type=int, default=128, help="new tokens at most (128)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the variants (2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="where to write the JSON (default benchmarks/results/generation_cpu.json)")
    parser.add_argument("--markdown", help="where to write the markdown (default: beside the JSON)")
    overrides, rest = split_overrides(list(argv))
    args = parser.parse_args(rest)
    args.overrides = overrides
    if min(args.cases, args.batch_size, args.new_tokens, args.rounds) < 1:
        parser.error("--cases, --batch-size, --new-tokens and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    report = measure(args, argv)
    json_path = Path(args.json) if args.json else RESULTS / "generation_cpu.json"
    write_report(report, json_path, markdown(report), markdown_path_for(json_path, args.markdown))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
