"""fcloop's training step and TRL's SFTTrainer side by side: the same rows, model, LoRA and precision, one run.

    python -m benchmarks.versus_trl                                            # CPU: Gemma-3-270M, configs/demo.toml
    python -m benchmarks.versus_trl --device cuda --steps 8 --json OUT.json   # GPU: gemma-2-2b, random weights
    python -m benchmarks.versus_trl --config configs/tiny.toml --steps 2      # seconds (the test suite runs this)

The training rows are built once, here, by fcloop's data path (load_datasets, then the loop's row plan for
epoch 0), and every side trains on exactly these rows in this order:

- fcloop: `fcloop.training.loop.train_step`, as benchmarks/throughput.py times it, with the config's settings;
- trl_packing: TRL `SFTTrainer` fed the rows as pre-tokenized packed rows (its packed format: input_ids and the
  documents' lengths, so its padding-free collator restarts positions per document), loss on every token (TRL's
  default for a language-modeling data set, and the recipe's);
- trl_completion_only: the same, with a `labels` column that supervises exactly fcloop's supervised tokens.

Sides alternate, each in a fresh process (model loading, memory peaks and allocator state apart), for several
rounds: fcloop, trl_packing, trl_completion_only, fcloop, ... so that the machine's drift hits all alike. LoRA
goes on the seven linear kinds only (TRL refuses an adapter on lm_head, which its fused loss reads directly, and
trainable embedding rows wrap the tied lm_head too), the same on every side; the optimizer is fcloop's AdamW on
every side, at a constant learning rate. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks.models import adamw, gemma2_2b_model, precision_resolved
from benchmarks.report import markdown_path_for, write_report
from fcloop.config import Config, load_config, split_overrides
from fcloop.data.load import load_datasets
from fcloop.data.packing import collate, plan_rows, shifted_targets
from fcloop.data.tokenization import IGNORE_INDEX, Encoded, prepare_tokenizer
from fcloop.model.load import attention_implementation, enable_activation_checkpointing, load_model, load_tokenizer
from fcloop.model.lora import add_token_rows, apply_lora, select_trainable
from fcloop.training import loop

SIDES = ("fcloop", "trl_packing", "trl_completion_only")
# What both can train: TRL's fused loss reads lm_head.weight directly and refuses an adapter on lm_head.
COMMON_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CPU_CONFIG = "configs/demo.toml"
CUDA_CONFIG = "benchmarks/versus_trl_gpu.toml"
GEMMA2_2B_ROWS = 256_000  # gemma-2-2b's embedding rows
NEEDED_PACKAGES = ("trl", "datasets")
REPO_ROOT = Path(__file__).resolve().parents[1]


# --- what every side trains on -------------------------------------------------------------------------------


def common_config(config: Config) -> Config:
    """The config with LoRA on the seven linear kinds only and no trainable token rows, the same for all
    sides (TRL 1.16 refuses an adapter on lm_head; trainable token rows of the tied embedding wrap lm_head too
    and break its fused loss)."""
    lora = dataclasses.replace(
        config.lora, target_modules=COMMON_TARGETS, train_new_token_rows=False, train_token_rows=()
    )
    return dataclasses.replace(config, lora=lora)


def training_steps(config: Config, steps: int) -> list[list[list[Encoded]]]:
    """The rows of the first `steps` optimizer steps, as the loop plans them: fcloop's data path, then
    epoch 0's row plan (packed by best-fit-decreasing, in the seed's order), rows_per_step rows a step."""
    tokenizer = load_tokenizer(config.model)
    prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    data = load_datasets(config.data, tokenizer, config.run.seed)
    rows = plan_rows([len(e) for e in data.train], config.data.max_seq_len, config.data.packing, config.run.seed, 0)
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    if steps * per_step > len(rows):
        raise SystemExit(f"{steps} steps of {per_step} rows need {steps * per_step} rows; the data has {len(rows)}")
    return [
        [[data.train[i] for i in row] for row in rows[step * per_step : (step + 1) * per_step]] for step in range(steps)
    ]


def rows_to_json(steps: list[list[list[Encoded]]]) -> list:
    return [[[{"input_ids": list(d.input_ids), "labels": list(d.labels)} for d in row] for row in s] for s in steps]


def rows_from_json(raw: list) -> list[list[list[Encoded]]]:
    return [
        [[Encoded(tuple(d["input_ids"]), tuple(d["labels"]), "rows", 0) for d in row] for row in step] for step in raw
    ]


def step_counts(step: list[list[Encoded]]) -> tuple[int, int, int]:
    """(input tokens, fcloop's supervised targets, targets of a loss on every token) of one step's rows: a
    document's first token is never a target, and its last predicts nothing within the document."""
    docs = [doc for row in step for doc in row]
    tokens = sum(len(doc) for doc in docs)
    supervised = sum(target != IGNORE_INDEX for doc in docs for target in shifted_targets(doc.labels))
    return tokens, supervised, tokens - len(docs)


def trl_row(docs: Sequence[Encoded], completion_only: bool) -> dict[str, list[int]]:
    """One packed row in the format TRL's own packing produces (`trl.pack_dataset`): the documents' tokens
    concatenated and their lengths (`seq_lengths`), from which its padding-free collator restarts the positions
    per document. With `completion_only`, a `labels` column (-100 where fcloop supervises nothing), which TRL
    uses as is; without it TRL's loss covers every token."""
    row = {"input_ids": [t for d in docs for t in d.input_ids], "seq_lengths": [len(d) for d in docs]}
    if completion_only:
        row["labels"] = [label for d in docs for label in d.labels]
    return row


# --- memory ----------------------------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> tuple[str, float]:
    """Restart the peak (after warm-up, so it covers the timed steps): (what the peak measures, the peak so far,
    model loading and warm-up included)."""
    before = peak_memory_gib(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "torch.cuda.max_memory_allocated over the timed steps", before
    try:
        # Linux: resets VmHWM, the peak resident set size (getrusage's ru_maxrss reads the same counter).
        Path("/proc/self/clear_refs").write_text("5")
        return "peak RSS (VmHWM) over the timed steps", before
    except OSError:
        return "peak RSS of the whole process (VmHWM could not be reset)", before


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    if match:
        return int(match.group(1)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: the whole process's peak


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- one side, in its own process ------------------------------------------------------------------------------


def trainable_model(config: Config, device: torch.device):
    """(model with LoRA, trainable (name, parameter) pairs, tokenizer), built as fcloop.training.loop.train builds it,
    seeded so every side starts from the same weights: gemma-2-2b from its config with random weights when the
    config names it (nothing is downloaded), else fcloop's loader."""
    dtype = torch.bfloat16 if config.train.precision == "bf16" else torch.float32
    tokenizer = load_tokenizer(config.model)
    new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    torch.manual_seed(config.run.seed)
    if "gemma-2-2b" in config.model.path:
        model = gemma2_2b_model(attention_implementation(config.model, device), dtype, device)
        model.config.use_cache = False
        vocab_size = max(GEMMA2_2B_ROWS, len(tokenizer))
    else:
        model = load_model(config.model, len(tokenizer), dtype, device, config.run.seed)
        vocab_size = len(tokenizer)
    add_token_rows(model, vocab_size, new_token_ids)
    return model, tokenizer, new_token_ids


def run_fcloop(config: Config, steps: list[list[list[Encoded]]], warmup: int, device: torch.device) -> dict:
    model, tokenizer, new_token_ids = trainable_model(config, device)
    if config.train.activation_checkpointing:
        enable_activation_checkpointing(model)
    torch.manual_seed(config.run.seed)
    model = apply_lora(model, config.lora, new_token_ids)
    trainable = select_trainable(model)
    optimizer = adamw(trainable, config.train, device)
    parameters = [parameter for _, parameter in trainable]
    loss_fn = functools.partial(loop.forward_loss, recompute_logits=config.train.recompute_logits)
    model.train()
    micro = config.train.micro_batch_size
    times, losses, memory_source, setup_peak = [], [], "", 0.0
    synchronize(device)
    last = time.perf_counter()
    # As fcloop.training.loop.train runs flex (on CUDA, not compiled: transformers compiles flex itself): its
    # silent fallback to the unfused kernel is an error, and the loop refuses flex under checkpointing without it.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for index, step in enumerate(steps):
            if index == warmup:
                memory_source, setup_peak = reset_peak_memory(device)
            # Collated inside the step, as the loop does (and as TRL's data loader does inside its step).
            batches = [
                collate(step[start : start + micro], tokenizer.pad_token_id) for start in range(0, len(step), micro)
            ]
            loss, _ = loop.train_step(
                model,
                optimizer,
                parameters,
                batches,
                config.train.precision,
                config.train.max_grad_norm,
                device,
                loss_fn,
            )
            synchronize(device)
            now = time.perf_counter()
            times.append(now - last)
            losses.append(loss)
            last = now
    return {
        "step_times": times,
        "losses": losses,
        "memory_source": memory_source,
        "peak_memory_gib": peak_memory_gib(device),
        "setup_peak_gib": setup_peak,
    }


def run_trl(
    config: Config, steps: list[list[list[Encoded]]], warmup: int, device: torch.device, completion_only: bool
) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    model, tokenizer, new_token_ids = trainable_model(config, device)
    # The same peft LoRA, created after the same seed, as fcloop's side: the same initial adapter weights. TRL
    # takes a PeftModel as it is; it enables gradient checkpointing itself from its arguments.
    torch.manual_seed(config.run.seed)
    model = apply_lora(model, config.lora, new_token_ids)
    trainable = select_trainable(model)
    optimizer = adamw(trainable, config.train, device)
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    dataset = Dataset.from_list([trl_row(row, completion_only) for step in steps for row in step])
    clock: dict = {"times": [], "memory_source": "", "setup_peak": 0.0}

    class StepClock(TrainerCallback):
        """Seconds from one optimizer step's end to the next's: everything the trainer does per step (data
        loading and collation, forward, backward, clipping, the update, its logging) counts."""

        def on_train_begin(self, args, state, control, **kwargs):
            synchronize(device)
            clock["last"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            now = time.perf_counter()
            clock["times"].append(now - clock["last"])
            clock["last"] = now
            if state.global_step == warmup:
                clock["memory_source"], clock["setup_peak"] = reset_peak_memory(device)

    with tempfile.TemporaryDirectory() as output_dir:
        args = SFTConfig(
            output_dir=output_dir,
            max_steps=len(steps),
            per_device_train_batch_size=config.train.micro_batch_size,
            gradient_accumulation_steps=config.train.grad_accum_steps,
            learning_rate=config.train.lr,
            lr_scheduler_type="constant",
            max_grad_norm=config.train.max_grad_norm if config.train.max_grad_norm > 0 else 1e30,
            bf16=config.train.precision == "bf16",
            fp16=False,
            use_cpu=device.type == "cpu",
            gradient_checkpointing=config.train.activation_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            packing=True,
            max_length=config.data.max_seq_len,
            dataset_kwargs={"skip_prepare_dataset": True},  # the rows are already TRL's packed rows
            train_sampling_strategy="sequential",  # the rows in fcloop's order, as the other sides see them
            dataloader_num_workers=0,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=config.run.seed,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            optimizers=(optimizer, constant),
            callbacks=[StepClock()],
        )
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "step_times": clock["times"],
        "losses": losses,
        "memory_source": clock["memory_source"],
        "peak_memory_gib": peak_memory_gib(device),
        "setup_peak_gib": clock["setup_peak"],
    }


def run_worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = common_config(precision_resolved(load_config(args.config, args.overrides), device))
    steps = rows_from_json(json.loads(Path(args.rows).read_text()))
    if args.worker == "fcloop":
        result = run_fcloop(config, steps, args.warmup, device)
    else:
        result = run_trl(config, steps, args.warmup, device, completion_only=args.worker == "trl_completion_only")
    # The whole process's peak: model loading and warm-up (read before the reset), or the timed steps.
    process_peak = max(result["setup_peak_gib"], result["peak_memory_gib"])
    result.update(side=args.worker, process_peak_gib=process_peak, threads=torch.get_num_threads())
    Path(args.result).write_text(json.dumps(result) + "\n")


# --- the comparison ----------------------------------------------------------------------------------------------


def missing_packages() -> list[str]:
    return [name for name in NEEDED_PACKAGES if importlib.util.find_spec(name) is None]


def run_side(side: str, round_index: int, args: argparse.Namespace, config_path: str, work: Path) -> dict:
    """One side in a fresh process; its result, or {"error": ...} with the end of its output."""
    result = work / f"{side}_{round_index}.json"
    command = [
        sys.executable, "-m", "benchmarks.versus_trl", "--worker", side, "--config", config_path,
        "--device", args.device, "--rows", str(work / "rows.json"), "--result", str(result),
        "--warmup", str(args.warmup), "--threads", str(args.threads or 0), *args.overrides,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        return {"side": side, "error": f"exit status {done.returncode}:\n" + "\n".join(tail)}
    return json.loads(result.read_text())


def spread(values: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": quartiles[0],
        "q3": quartiles[2],
    }


def summarize_side(side: str, runs: list[dict], counts: list[tuple[int, int, int]], warmup: int) -> dict:
    """Rates over every round's timed steps (total tokens / total seconds), step-time spread, per-round
    rates, memory, and the loss after the last step."""
    ok = [run for run in runs if "error" not in run]
    entry: dict = {"side": side, "rounds": len(ok), "errors": [run["error"] for run in runs if "error" in run]}
    if not ok:
        return entry
    timed = counts[warmup:]
    tokens = sum(c[0] for c in timed)
    supervised = sum(c[1] for c in timed)
    loss_tokens = sum(c[2] if side == "trl_packing" else c[1] for c in timed)
    round_seconds = [sum(run["step_times"][warmup:]) for run in ok]
    step_times = [t for run in ok for t in run["step_times"][warmup:]]
    seconds = sum(round_seconds)
    final_losses = [run["losses"][-1] for run in ok]
    entry.update(
        tokens_per_sec=len(ok) * tokens / seconds,
        supervised_tokens_per_sec=len(ok) * supervised / seconds,
        round_tokens_per_sec=[tokens / s for s in round_seconds],
        step_time_s=spread(step_times),
        peak_memory_gib=statistics.median(run["peak_memory_gib"] for run in ok),
        process_peak_gib=statistics.median(run["process_peak_gib"] for run in ok),
        memory_source=ok[0]["memory_source"],
        loss_tokens_per_step=loss_tokens / len(timed),
        losses=ok[0]["losses"],
        final_loss=final_losses[0],
        final_loss_spread_across_rounds=max(final_losses) - min(final_losses),
        threads=ok[0]["threads"],
    )
    return entry


def ratios(sides: dict[str, dict]) -> dict[str, dict]:
    """fcloop's input tokens/s over each TRL side's: over all rounds, and per round (each round's fcloop and
    TRL runs back to back, so the per-round ratios show how much the machine's drift moved it)."""
    ours = sides["fcloop"]
    out = {}
    for side in SIDES[1:]:
        other = sides[side]
        if "tokens_per_sec" not in ours or "tokens_per_sec" not in other:
            continue
        per_round = [a / b for a, b in zip(ours["round_tokens_per_sec"], other["round_tokens_per_sec"], strict=False)]
        out[side] = {"overall": ours["tokens_per_sec"] / other["tokens_per_sec"], "per_round": per_round}
    return out


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else ""
    return f"cpu: {model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        f"# fcloop vs TRL SFTTrainer on {report['machine']}",
        "",
        f"{report['date']}; command: `{report['command']}`",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        "",
        f"Model {settings['model']} ({settings['precision']}, attention {settings['attention']}), "
        f"LoRA r={settings['lora_r']} "
        f"on {', '.join(settings['lora_targets'])}, {settings['rows_per_step']} row(s) of at most "
        f"{settings['max_seq_len']} tokens per step (micro-batch {settings['micro_batch_size']}), activation "
        f"checkpointing {'on' if settings['activation_checkpointing'] else 'off'}; {report['rounds']} rounds of "
        f"{report['warmup']} warm-up + {report['steps']} timed steps per side, sides alternating, each in its own "
        f"process; {settings['tokens_per_step']:.0f} input tokens and {settings['supervised_tokens_per_step']:.0f} "
        "supervised tokens per timed step (the same rows for every side).",
        "",
        "| side | input tokens/s | supervised tokens/s | step s: median [min-max] | peak memory GiB (steps / process) "
        "| loss tokens/step | loss after the last step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        entry = report["sides"][side]
        if "tokens_per_sec" not in entry:
            lines.append(f"| {side} | failed: {entry['errors'][0].splitlines()[0] if entry['errors'] else '-'} |||||")
            continue
        step = entry["step_time_s"]
        lines.append(
            f"| {side} | {entry['tokens_per_sec']:.1f} | {entry['supervised_tokens_per_sec']:.1f} "
            f"| {step['median']:.3f} [{step['min']:.3f}-{step['max']:.3f}] "
            f"| {entry['peak_memory_gib']:.2f} / {entry['process_peak_gib']:.2f} "
            f"| {entry['loss_tokens_per_step']:.0f} | {entry['final_loss']:.4f} |"
        )
    lines.append("")
    for side, ratio in report["ratios"].items():
        per_round = ", ".join(f"{value:.2f}" for value in ratio["per_round"])
        lines.append(f"- fcloop / {side}: **{ratio['overall']:.2f}x** input tokens/s (per round: {per_round})")
    memory_source = next((e["memory_source"] for e in report["sides"].values() if e.get("memory_source")), "")
    lines += [
        "",
        f"Peak memory: {memory_source} (median over rounds); process: the whole process's peak (model "
        "loading, warm-up and timed steps). trl_packing's loss covers every token (the recipe's), so its loss "
        "is another objective's; trl_completion_only's covers exactly fcloop's supervised tokens, from the same "
        "initial weights, so it should follow fcloop's.",
    ]
    return "\n".join(lines) + "\n"


def compare(
    args: argparse.Namespace, argv: Sequence[str], after_round: Callable[[dict], None] = lambda report: None
) -> dict:
    """Every side in every round, alternating; the report, also handed to `after_round` after each round (so a
    run cut off by a timeout keeps the rounds it finished)."""
    device = torch.device(args.device)
    config_path = args.config or (CUDA_CONFIG if device.type == "cuda" else CPU_CONFIG)
    config = common_config(precision_resolved(load_config(config_path, args.overrides), device))
    print(f"[versus_trl] building the rows of {args.warmup + args.steps} steps from {config_path}", flush=True)
    steps = training_steps(config, args.warmup + args.steps)
    counts = [step_counts(step) for step in steps]
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "rows.json").write_text(json.dumps(rows_to_json(steps)))
        for round_index in range(args.rounds):
            for side in SIDES:
                print(f"[versus_trl] round {round_index + 1}/{args.rounds}: {side}", flush=True)
                started = time.perf_counter()
                run = run_side(side, round_index, args, config_path, work)
                took = f"(its process: {time.perf_counter() - started:.0f} s)"
                if "error" in run:
                    print(f"[versus_trl]   failed {took}: {run['error']}", flush=True)
                else:
                    rate = sum(c[0] for c in counts[args.warmup :]) / sum(run["step_times"][args.warmup :])
                    print(
                        f"[versus_trl]   {rate:.1f} tokens/s, loss after the last step {run['losses'][-1]:.4f} {took}",
                        flush=True,
                    )
                runs[side].append(run)
            report = comparison_report(args, argv, device, config_path, config, counts, runs, round_index + 1)
            after_round(report)
    return report


def comparison_report(
    args: argparse.Namespace,
    argv: Sequence[str],
    device: torch.device,
    config_path: str,
    config: Config,
    counts: list[tuple[int, int, int]],
    runs: dict[str, list[dict]],
    rounds_done: int,
) -> dict:
    sides = {side: summarize_side(side, runs[side], counts, args.warmup) for side in SIDES}
    timed = counts[args.warmup :]
    report = {
        "machine": machine(device),
        "device": device.type,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.versus_trl " + shlex.join(argv),
        "config": config_path,
        "versions": package_versions(),
        "rounds": rounds_done,
        "rounds_asked": args.rounds,
        "warmup": args.warmup,
        "steps": args.steps,
        "settings": {
            "model": config.model.path,
            "tokenizer": config.model.tokenizer or config.model.path,
            "precision": config.train.precision,
            "attention": attention_implementation(config.model, device),
            "lora_r": config.lora.r,
            "lora_alpha": config.lora.alpha,
            "lora_dropout": config.lora.dropout,
            "lora_targets": list(config.lora.target_modules),
            "micro_batch_size": config.train.micro_batch_size,
            "rows_per_step": config.train.micro_batch_size * config.train.grad_accum_steps,
            "max_seq_len": config.data.max_seq_len,
            "activation_checkpointing": config.train.activation_checkpointing,
            "recompute_logits": config.train.recompute_logits,
            "lr": config.train.lr,
            "tokens_per_step": sum(c[0] for c in timed) / len(timed),
            "supervised_tokens_per_step": sum(c[1] for c in timed) / len(timed),
        },
        "step_tokens": [{"tokens": c[0], "supervised": c[1], "all_token_targets": c[2]} for c in counts],
        "sides": sides,
        "ratios": ratios(sides),
    }
    return report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus_trl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        help=f"fcloop TOML, any key overridable with --section.key=value; default {CPU_CONFIG} on CPU, "
        f"{CUDA_CONFIG} on CUDA",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per side and round")
    parser.add_argument("--warmup", type=int, help="untimed steps first (at least 1); 1 on CPU, 3 on CUDA")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of fcloop, trl_packing, trl_completion_only")
    parser.add_argument("--threads", type=int, help="torch threads in each side's process (default: torch's)")
    parser.add_argument("--json", default="runs/benchmark/versus_trl.json", help="where to write the JSON")
    parser.add_argument("--markdown", help="where to write the markdown (default: beside the JSON)")
    # Internal: one side in its own process (the comparison starts these).
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    overrides, rest = split_overrides(list(argv))
    args = parser.parse_args(rest)
    args.overrides = overrides
    if args.warmup is None:
        args.warmup = 3 if args.device.startswith("cuda") else 1
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--warmup, --steps and --rounds must be at least 1 (a step's time starts at the previous end)")
    return args


def main(argv: Sequence[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return None
    if missing := missing_packages():
        raise SystemExit(
            f"benchmarks.versus_trl needs TRL, an optional extra of fcloop ({', '.join(missing)} not installed): "
            'pip install -e ".[bench]"'
        )
    json_path = Path(args.json)
    markdown_path = markdown_path_for(json_path, args.markdown)
    report = compare(args, argv, lambda so_far: write_report(so_far, json_path, markdown(so_far), markdown_path))
    table = markdown(report)
    print(table)
    print(f"[versus_trl] wrote {json_path} and {markdown_path}")
    return report


if __name__ == "__main__":
    main()
