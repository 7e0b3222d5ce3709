"""The training step on a CPU by precision and compile: the real `fcloop.training.loop.train()` in four variants.

    python -m benchmarks.cpu_step                                  # Gemma-3-270M, configs/demo.toml (minutes)
    python -m benchmarks.cpu_step --config configs/tiny.toml --steps 2 --rounds 1 --compile-backend aot_eager

Each variant is `python -m fcloop.train CONFIG` with train.precision and train.compile set (fp32 eager, fp32
compiled, bf16 eager, bf16 compiled), in a fresh process, so compiled graphs, inductor's in-process caches and
memory peaks never carry over. Variants alternate within each round, for several rounds, so drift of a shared
machine hits all alike. Each runs `--warmup` untimed optimizer steps (compilation happens there) and `--steps`
timed ones; tokens/s and losses come from the run's own metrics.jsonl (train/tokens_per_sec: real tokens, not
padding, over the optimizer step). A variant that fails is reported with the end of its output. The report also
says what `auto` picks on this machine (fcloop.hardware), so it can be checked against the fastest variant.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.report import markdown_path_for, write_report
from fcloop.config import load_config, split_overrides
from fcloop.hardware import REPORTED_CPU_FLAGS, cpu_name, detect_cpu_flags, detect_hardware, plan_compute
from fcloop.model.load import attention_implementation
from fcloop.training.metrics import read_metrics, read_run_file

DEFAULT_CONFIG = "configs/demo.toml"
RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
# name -> (train.precision, train.compile)
VARIANTS = {
    "fp32_eager": ("fp32", False),
    "fp32_compiled": ("fp32", True),
    "bf16_eager": ("bf16", False),
    "bf16_compiled": ("bf16", True),
}
REFERENCE = "fp32_eager"
# How far a variant's loss after the last step may be from fp32 eager's, relative. fp32 compiled only reorders
# sums (inductor's fused kernels); bf16 rounds every matmul input to 8 mantissa bits, and a few updates carry
# that on. Beyond these, look for a real difference before trusting the variant's speed.
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2}
OUTPUT_TAIL_LINES = 15


# --- one variant, in its own process ----------------------------------------------------------------------------


def variant_overrides(name: str, args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The overrides that make the config's run this variant's short benchmark run (after the user's own, so
    they win): only training steps, each logged, no evaluation, no checkpoint, never a resume."""
    precision, compiled = VARIANTS[name]
    return [
        f"--run.out_dir={out_dir}",
        f"--train.precision={precision}",
        f"--train.compile={'true' if compiled else 'false'}",
        f"--train.compile_backend={args.compile_backend}",
        f"--train.max_steps={args.warmup + args.steps}",
        "--train.log_every_steps=1",
        "--eval.every_steps=0",
        "--checkpoint.every_steps=0",
        "--checkpoint.resume=never",
    ]


def run_variant(name: str, round_index: int, args: argparse.Namespace, work: Path) -> dict:
    """Train one variant in a fresh process; its per-step tokens/s and losses and what it ran as (run.json), or
    {"error": ...} with the end of its output."""
    out_dir = work / f"{name}_{round_index}"
    command = [
        sys.executable, "-m", "fcloop.train", args.config, *args.overrides, *variant_overrides(name, args, out_dir)
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)  # torch's default thread count in that process
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.variant_timeout)
    except subprocess.TimeoutExpired as expired:
        # A variant too slow to finish (emulated bf16, a long compile) is a result too: it is reported, not waited
        # for, so that the other variants are measured in the time there is.
        output = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        tail = output.strip().splitlines()[-3:]
        return {"error": f"timed out after {args.variant_timeout:g} s:\n" + "\n".join(tail)}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-OUTPUT_TAIL_LINES:]
        return {"error": f"exit status {done.returncode}:\n" + "\n".join(tail)}
    steps = [record for record in read_metrics(out_dir) if "train/loss" in record]
    ran_as = read_run_file(out_dir)
    return {
        "tokens_per_sec": [record["train/tokens_per_sec"] for record in steps],
        "losses": [record["train/loss"] for record in steps],
        "precision": ran_as["precision"],
        "compile": ran_as["compile"],
        "wall_s": wall,
    }


# --- the summary ------------------------------------------------------------------------------------------------


def summarize_variant(name: str, runs: list[dict], warmup: int) -> dict:
    """The median tokens/s over every round's timed steps (after `warmup`), per-round medians, and the loss
    after the last step; errors as they came."""
    ok = [run for run in runs if "error" not in run]
    precision, compiled = VARIANTS[name]
    entry: dict = {
        "variant": name,
        "precision": precision,
        "compile": compiled,
        "rounds": len(ok),
        "errors": [run["error"] for run in runs if "error" in run],
    }
    if not ok:
        return entry
    timed = [rate for run in ok for rate in run["tokens_per_sec"][warmup:]]
    final_losses = [run["losses"][-1] for run in ok]
    entry.update(
        ran_as=[{"precision": run["precision"], "compile": run["compile"]} for run in ok],
        tokens_per_sec=statistics.median(timed),
        round_tokens_per_sec=[statistics.median(run["tokens_per_sec"][warmup:]) for run in ok],
        timed_steps=len(timed),
        wall_s=[run["wall_s"] for run in ok],
        losses=ok[0]["losses"],
        final_loss=final_losses[0],
        final_loss_spread_across_rounds=max(final_losses) - min(final_losses),
    )
    return entry


def compare_to_reference(variants: dict[str, dict]) -> dict[str, dict]:
    """Each variant's speed and final loss against fp32 eager's: tokens/s ratio, relative loss difference, and
    whether that is within LOSS_TOLERANCE of its precision. Empty where either side has no result."""
    reference = variants[REFERENCE]
    if "tokens_per_sec" not in reference:
        return {}
    out = {}
    for name, entry in variants.items():
        if name == REFERENCE or "tokens_per_sec" not in entry:
            continue
        difference = abs(entry["final_loss"] - reference["final_loss"]) / abs(reference["final_loss"])
        tolerance = LOSS_TOLERANCE[entry["precision"]]
        out[name] = {
            "speedup": entry["tokens_per_sec"] / reference["tokens_per_sec"],
            "final_loss_relative_difference": difference,
            "tolerance": tolerance,
            "within_tolerance": difference <= tolerance,
        }
    return out


def machine(threads: int | None) -> dict:
    """The CPU: model name, the flags that decide precision and speed, cores, and the variants' torch threads."""
    flags = detect_cpu_flags()
    return {
        "cpu": cpu_name(),
        "flags": {flag: flag in flags for flag in REPORTED_CPU_FLAGS},
        "cores": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
    }


def auto_choice(config_path: str, overrides: Sequence[str]) -> dict:
    """What `train.precision = "auto"` and `train.compile = "auto"` pick here, with their reasons."""
    config = load_config(config_path, [*overrides, "--train.precision=auto", "--train.compile=auto"])
    device = torch.device("cpu")
    plan = plan_compute(config.train, detect_hardware(device), attention_implementation(config.model, device))
    return {
        "precision": plan.precision,
        "compile": plan.compile,
        "reasons": [plan.precision_reason, plan.compile_reason],
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def failure_summary(errors: list[str]) -> str:
    """One table cell for a variant without a result: how the first failure ended (`timed out after N s`), or
    its exit status and the last line of its output (the exception's own line)."""
    if not errors:
        return "-"
    lines = errors[0].splitlines()
    head = lines[0].rstrip(":")
    cell = head if head.startswith("timed out") or len(lines) == 1 else f"{head}: {lines[-1]}"
    return cell.replace("|", "/")


def markdown(report: dict) -> str:
    cpu = report["machine"]
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in cpu["flags"].items())
    auto = report["auto"]
    lines = [
        f"# The training step on {cpu['cpu']} by precision and compile",
        "",
        f"{report['date']}; command: `{report['command']}`",
        "",
        f"CPU: {cpu['cpu']}, {cpu['cores']} cores (torch threads {cpu['torch_threads']}); flags: {flags}.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        "",
        f"Config {report['config']} (model {report['model']}); each variant is `python -m fcloop.train` in its own "
        f"process, {report['rounds']} round(s) of {report['warmup']} warm-up + {report['steps']} timed optimizer "
        f"steps, variants alternating; compile backend {report['compile_backend']}. tokens/s: the median over "
        "every round's timed steps of the run's train/tokens_per_sec (real tokens, not padding).",
        "",
        "| variant | tokens/s (median) | per round | vs fp32 eager | loss after the last step | loss vs fp32 eager "
        "| wall s per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in VARIANTS:
        entry = report["variants"][name]
        if "tokens_per_sec" not in entry:
            lines.append(f"| {name} | failed: {failure_summary(entry['errors'])} ||||||")
            continue
        compared = report["versus_fp32_eager"].get(name)
        speedup = f"{compared['speedup']:.2f}x" if compared else "1.00x" if name == REFERENCE else "-"
        loss_vs = "-"
        if compared:
            verdict = "ok" if compared["within_tolerance"] else "OUTSIDE"
            loss_vs = f"{compared['final_loss_relative_difference']:.1e} ({verdict}, tol {compared['tolerance']:g})"
        per_round = ", ".join(f"{value:.1f}" for value in entry["round_tokens_per_sec"])
        wall = ", ".join(f"{value:.0f}" for value in entry["wall_s"])
        lines.append(
            f"| {name} | {entry['tokens_per_sec']:.1f} | {per_round} | {speedup} | {entry['final_loss']:.4f} "
            f"| {loss_vs} | {wall} |"
        )
    lines += [
        "",
        f"`auto` on this machine: precision {auto['precision']}, compile {'on' if auto['compile'] else 'off'} ("
        + "; ".join(auto["reasons"])
        + ").",
        "",
        "Loss tolerance, relative to fp32 eager's loss after the last step: "
        + ", ".join(f"{precision} {tolerance:g}" for precision, tolerance in LOSS_TOLERANCE.items())
        + " (fp32 compiled only reorders sums; bf16 rounds matmul inputs to 8 mantissa bits at every layer).",
    ]
    errors = [(name, error) for name, entry in report["variants"].items() for error in entry["errors"]]
    if errors:
        lines += ["", "## Errors", ""]
        for name, error in errors:
            lines += [f"{name}:", "", "```", error, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def default_json_path(cpu: str) -> Path:
    """benchmarks/results/cpu_step_<cpu model>.json, e.g. cpu_step_amd_epyc.json."""
    slug = re.sub(r"[^a-z0-9]+", "_", cpu.lower()).strip("_")[:40].strip("_") or "cpu"
    return RESULTS / f"cpu_step_{slug}.json"


def measure(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    config = load_config(args.config, args.overrides)  # a bad config fails here, before any variant starts
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for name in VARIANTS:
                print(f"[cpu_step] round {round_index + 1}/{args.rounds}: {name}", flush=True)
                run = run_variant(name, round_index, args, Path(folder))
                if "error" in run:
                    print(f"[cpu_step]   failed: {run['error']}", flush=True)
                else:
                    rate = statistics.median(run["tokens_per_sec"][args.warmup :])
                    print(f"[cpu_step]   {rate:.1f} tokens/s, loss after the last step {run['losses'][-1]:.4f}")
                runs[name].append(run)
    variants = {name: summarize_variant(name, runs[name], args.warmup) for name in VARIANTS}
    return {
        "machine": machine(args.threads),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.cpu_step " + shlex.join(argv),
        "config": args.config,
        "model": config.model.path,
        "versions": package_versions(),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "steps": args.steps,
        "compile_backend": args.compile_backend,
        "loss_tolerance": LOSS_TOLERANCE,
        "auto": auto_choice(args.config, args.overrides),
        "variants": variants,
        "versus_fp32_eager": compare_to_reference(variants),
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_step", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"fcloop TOML, keys overridable with --section.key=value ({DEFAULT_CONFIG})",
    )
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per variant and round (8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them (2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the four variants (2)")
    parser.add_argument("--compile-backend", default="inductor", help="train.compile_backend of compiled variants")
    parser.add_argument("--threads", type=int, help="torch threads in each variant's process (default: torch's)")
    parser.add_argument(
        "--variant-timeout", type=float, help="seconds a variant's run may take; past it, reported as timed out"
    )
    parser.add_argument("--json", help="where to write the JSON (default benchmarks/results/cpu_step_<cpu>.json)")
    parser.add_argument("--markdown", help="where to write the markdown (default: beside the JSON)")
    overrides, rest = split_overrides(list(argv))
    args = parser.parse_args(rest)
    args.overrides = overrides
    if args.warmup < 0 or args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    report = measure(args, argv)
    json_path = Path(args.json) if args.json else default_json_path(report["machine"]["cpu"])
    markdown_path = markdown_path_for(json_path, args.markdown)
    table = markdown(report)
    write_report(report, json_path, table, markdown_path)
    print(table)
    print(f"[cpu_step] wrote {json_path} and {markdown_path}")
    return report


if __name__ == "__main__":
    main()
