"""Training throughput of the real fcloop step, against the step our users run today.

    python -m benchmarks.throughput                        # gemma-2-2b (random weights): the GPU-window set
    python -m benchmarks.throughput --sweep                # the full sweep (hours)
    python -m benchmarks.throughput --quick                # a few configurations at the config's seq len
    python -m benchmarks.throughput --config configs/tiny.toml --device cpu --steps 3 --json OUT   # CI smoke

The model is gemma-2-2b built from its real config (benchmarks/models.py; random weights, nothing to
download), or the tiny model with `--config configs/tiny.toml`. Every configuration builds a fresh model the way
`fcloop.training.loop.train` does (new-token rows, activation checkpointing, LoRA, the trainable selection, AdamW)
and times optimizer steps on packed synthetic rows, after warm-up steps, synchronizing before each reading.

The baseline is the Agents Course recipe's step: its own LoRA (benchmarks/models.py, no fcloop token rows),
the HF model's own forward with labels (full logits, loss over every token), eager attention, activation
checkpointing, micro-batch 1, rows made by concatenating documents without isolation. Its supervised
tokens/s counts the tokens our masking would supervise, so `speedup_vs_baseline` compares useful work.
See benchmarks/README.md for the columns, the MFU formula and the GPU-window set.
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from benchmarks.kernels import markdown_lines as kernel_markdown
from benchmarks.kernels import profile_step
from benchmarks.mfu import (
    DATASHEET_PEAK_TFLOPS,
    MatmulCounts,
    MatmulPeak,
    document_lengths,
    matmul_counts,
    measure_matmul_peak,
    step_flops,
    t_eff,
)
from benchmarks.models import NEW_TOKENS, adamw, base_model, precision_resolved, recipe_lora
from benchmarks.report import markdown_path_for, write_report
from fcloop.config import Config, TrainConfig, load_config
from fcloop.data.packing import Batch, best_fit_decreasing, collate, shifted_targets
from fcloop.data.tokenization import IGNORE_INDEX, Encoded
from fcloop.errors import FcloopError, run_cli
from fcloop.model.compile import compile_for_training
from fcloop.model.flex_attention import attention_masks_for
from fcloop.model.load import base_config, enable_activation_checkpointing, model_parts
from fcloop.model.lora import apply_lora, select_trainable
from fcloop.model.loss import DEFAULT_CHUNK_SIZE
from fcloop.training import loop
from fcloop.training.loop import autocast, forward_loss

COMPILE_BACKEND = "inductor"  # train.compile_backend's default: what a user's compiled run uses

DEFAULT_CONFIG = "configs/gemma.toml"
FIRST_ORDINARY_ID = 5  # synthetic text avoids <pad> <eos> <bos> and the first control tokens
DOCUMENT_LENGTHS = (200, 1500)  # uniform; the recipe truncates at 1500 tokens
SUPERVISED_SHARE = 3  # the trailing 1/3 of each document is supervised, like an assistant turn ending it
RECIPE_SEQ_LEN = 1500  # the recipe's max_length
CPU_MAX_SEQ_LEN = 512  # eager attention's T x T tensors make 2048-token rows take many seconds a step on 2 cores
WINDOW_SEQ_LEN = 4096  # the GPU-window set's row length
LEAN_LOSS_CHUNK_TOKENS = 256  # the lean configuration's loss chunk: ~1 GB of fp32 logits work instead of ~4-5
MATMUL_SIZE = {"cuda": 8192, "cpu": 512}  # the peak's square matmul; 8192^3 would take minutes on a CPU
ATTENTIONS = ("eager", "flex_attention")
LOSSES = ("chunked", "full_logits")

LossFn = Callable[[nn.Module, Batch, str, torch.device], tuple[torch.Tensor, int]]


# --- what one step costs -----------------------------------------------------------------------------------


# --- synthetic data ------------------------------------------------------------------------------------------


def synthetic_documents(count: int, vocab_size: int, max_len: int, seed: int) -> list[Encoded]:
    """Random-token documents with seeded lengths; the trailing third of each is supervised."""
    lengths = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    low, high = min(DOCUMENT_LENGTHS[0], max_len // 2), min(DOCUMENT_LENGTHS[1], max_len)
    docs = []
    for index in range(count):
        length = lengths.randint(low, high)
        ids = tuple(torch.randint(FIRST_ORDINARY_ID, vocab_size, (length,), generator=generator).tolist())
        start = length - length // SUPERVISED_SHARE
        labels = (IGNORE_INDEX,) * start + ids[start:]
        docs.append(Encoded(ids, labels, "synthetic", index))
    return docs


def documents_for(rows: int, seq_len: int, vocab_size: int, seed: int) -> list[Encoded]:
    # Twice the tokens the rows need: best-fit-decreasing then leaves only its last few rows part-full.
    mean_length = (min(DOCUMENT_LENGTHS[0], seq_len // 2) + min(DOCUMENT_LENGTHS[1], seq_len)) / 2
    return synthetic_documents(int(2 * rows * seq_len / mean_length) + 2, vocab_size, seq_len, seed)


def packed_batches(docs: list[Encoded], seq_len: int, micro_batch_size: int, count: int, pad_id: int) -> list[Batch]:
    """`count` micro-batches of rows packed by fcloop's best-fit-decreasing, padded to seq_len (fixed shapes,
    so compiled code is not recompiled for each row width)."""
    rows = best_fit_decreasing([len(doc) for doc in docs], seq_len)
    random.Random(0).shuffle(rows)  # BFD lists the longest documents first; a real epoch is shuffled too
    needed = count * micro_batch_size
    if len(rows) < needed:
        raise RuntimeError(f"{len(rows)} packed rows, {needed} needed")
    chosen = [[docs[i] for i in row] for row in rows[:needed]]
    return [
        collate(chosen[start : start + micro_batch_size], pad_id, pad_to=seq_len)
        for start in range(0, needed, micro_batch_size)
    ]


def concatenated_batches(docs: list[Encoded], seq_len: int, count: int) -> list[Batch]:
    """The recipe's rows: documents concatenated and cut every seq_len tokens, one row per micro-batch,
    positions 0..T-1 and no document boundaries. target_ids holds what fcloop would supervise, for counting."""
    ids = [token for doc in docs for token in doc.input_ids]
    targets = [target for doc in docs for target in shifted_targets(doc.labels)]
    if len(ids) < count * seq_len:
        raise RuntimeError(f"{len(ids)} tokens, {count * seq_len} needed")
    batches = []
    for index in range(count):
        window = slice(index * seq_len, (index + 1) * seq_len)
        batches.append(
            Batch(
                input_ids=torch.tensor([ids[window]]),
                position_ids=torch.arange(seq_len)[None],
                target_ids=torch.tensor([targets[window]]),
                document_ids=torch.zeros(1, seq_len, dtype=torch.long),
            )
        )
    return batches


# --- the steps timed -----------------------------------------------------------------------------------------


def mask_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def full_logits_loss(model: nn.Module, batch: Batch, precision: str, device: torch.device) -> tuple[torch.Tensor, int]:
    """The alternative to fcloop's chunked loss: the model's own logits at every position (softcapped inside
    the model), cross-entropy at the supervised ones. Same masks and sum as forward_loss."""
    config = base_config(model)
    masks = attention_masks_for(batch, config, config._attn_implementation, mask_dtype(precision))
    with autocast(device, precision):
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=masks).logits
    targets = batch.target_ids.flatten()
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, batch.supervised_tokens


def recipe_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    batch: Batch,
    train: TrainConfig,
    device: torch.device,
) -> None:
    """The recipe's step (TRL SFTTrainer, batch 1): HF forward with labels = inputs, mean loss over every
    token from full logits, default causal mask over the whole concatenated row."""
    input_ids = batch.input_ids.to(device)
    with autocast(device, train.precision):
        loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    float(loss.detach())  # the trainer reads the loss for logging: the same device sync
    max_norm = train.max_grad_norm if train.max_grad_norm > 0 else float("inf")
    torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# --- one configuration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    seq_len: int
    micro_batch_size: int
    checkpointing: bool
    attention: str
    loss: str
    compile: bool
    baseline: bool = False
    loss_chunk_tokens: int = DEFAULT_CHUNK_SIZE

    @property
    def name(self) -> str:
        if self.baseline:
            return (
                f"baseline (recipe): its LoRA, HF forward+labels, eager, checkpointing, mb 1, concatenated "
                f"T={self.seq_len}"
            )
        loss = self.loss if self.loss != "chunked" else f"chunked {self.loss_chunk_tokens}"
        flags = [self.attention, loss, "ckpt" if self.checkpointing else "no-ckpt"]
        if self.compile:
            flags.append("compiled layers")
        return f"T={self.seq_len} mb={self.micro_batch_size} " + " ".join(flags)

    @property
    def choices(self) -> tuple:
        return (self.checkpointing, self.attention, self.loss, self.compile, self.baseline, self.loss_chunk_tokens)

    def at_most(self, other: Setting) -> bool:
        """Same choices as `other`, seq len and micro-batch no larger: if `self` ran out of memory, so will
        `other`."""
        smaller = self.seq_len <= other.seq_len and self.micro_batch_size <= other.micro_batch_size
        return self.choices == other.choices and smaller


@dataclass
class Measurement:
    step_times: list[float]
    tokens: int
    supervised_tokens: int
    flops: float
    t_eff: float
    packing_fill: float
    peak_allocated_gib: float
    peak_reserved_gib: float
    step_function: str
    profile: dict | None = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> tuple[float, float]:
    """(allocated, reserved) peaks on CUDA; on CPU both are the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    return rss, rss


def memory_source(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated / max_memory_reserved, reset per configuration"
    return "CPU: process peak RSS (both columns), not reset between configurations"


def timed_steps(step: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> list[float]:
    """Seconds per step for `steps` steps after `warmup` untimed ones (compilation happens in warm-up)."""
    for index in range(warmup):
        step(index)
    times = []
    for index in range(warmup, warmup + steps):
        synchronize(device)
        started = time.perf_counter()
        step(index)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def trainable_model(config: Config, setting: Setting, device: torch.device):
    """(model, optimizer, trainable parameters), set up in fcloop.training.loop.train's order; the baseline with the
    recipe's own LoRA and nothing of fcloop's (its new rows are resized in, as the recipe does, not trained)."""
    dtype = torch.bfloat16 if config.train.precision == "bf16" else torch.float32
    model, new_token_ids = base_model(config, setting.attention, dtype, device)
    if setting.checkpointing:
        enable_activation_checkpointing(model)
    if setting.baseline:
        model = recipe_lora(model, config)
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    else:
        model = apply_lora(model, config.lora, new_token_ids)
        trainable = select_trainable(model)
    optimizer = adamw(trainable, config.train, device)
    if setting.compile:  # as the loop compiles (train.compile): every layer, one more graph an error
        compile_for_training(model_parts(model).decoder, COMPILE_BACKEND)
    model.train()
    return model, optimizer, [parameter for _, parameter in trainable]


def measure(config: Config, setting: Setting, args: argparse.Namespace, device: torch.device) -> Measurement:
    # Flex attention is compiled here (by transformers when the layers are not): dynamo's silent fallback to
    # uncompiled code would time the wrong thing (and give wrong gradients under checkpointing), so an error.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        return measure_setting(config, setting, args, device)


def measure_setting(config: Config, setting: Setting, args: argparse.Namespace, device: torch.device) -> Measurement:
    torch.manual_seed(config.run.seed)
    model, optimizer, parameters = trainable_model(config, setting, device)
    counts = matmul_counts(model)
    vocab_size = model.get_input_embeddings().weight.shape[0] - NEW_TOKENS
    pad_id = base_config(model).pad_token_id
    count = args.warmup + args.steps
    docs = documents_for(count * setting.micro_batch_size, setting.seq_len, vocab_size, config.run.seed)
    if setting.baseline:
        batches = concatenated_batches(docs, setting.seq_len, count)

        def step(index: int) -> None:
            recipe_step(model, optimizer, parameters, batches[index], config.train, device)

        step_function = "benchmarks.throughput.recipe_step"
    else:
        batches = packed_batches(docs, setting.seq_len, setting.micro_batch_size, count, pad_id)
        # The chunked loss exactly as the loop runs it: logits recomputed in backward unless the config keeps them.
        chunked = functools.partial(
            forward_loss,
            recompute_logits=config.train.recompute_logits,
            loss_chunk_tokens=setting.loss_chunk_tokens,
            mask_compile_backend=COMPILE_BACKEND if setting.compile else None,
        )
        loss_fn = chunked if setting.loss == "chunked" else full_logits_loss

        def step(index: int) -> None:
            loop.train_step(
                model, optimizer, parameters, [batches[index]], config.train.precision, config.train.max_grad_norm,
                device, loss_fn,
            )  # fmt: skip

        step_function = "fcloop.training.loop.train_step"
    reset_memory(device)
    times = timed_steps(step, args.warmup, args.steps, device)
    allocated, reserved = peak_memory_gib(device)
    measurement = summarize(batches[args.warmup :], counts, setting, times, allocated, reserved, step_function)
    if args.profile:  # after the timed steps and the memory reading, neither of which includes it; the last batch again
        try:
            measurement.profile = profile_step(step, count - 1, device)
        except Exception as error:  # a profiler failure must not lose the configuration's measured numbers
            measurement.profile = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    return measurement


def summarize(
    batches: list[Batch],
    counts: MatmulCounts,
    setting: Setting,
    times: list[float],
    allocated: float,
    reserved: float,
    step_function: str,
) -> Measurement:
    """Token counts and needed FLOPs of the timed batches."""
    tokens = sum(batch.tokens for batch in batches)
    supervised = sum(batch.supervised_tokens for batch in batches)
    if setting.baseline:
        # The recipe attends over the whole row and needs logits at every position.
        lengths = [setting.seq_len] * len(batches)
        lm_head_tokens = tokens
    else:
        lengths = [n for batch in batches for n in document_lengths(batch)]
        lm_head_tokens = supervised
    squares = sum(n * n for n in lengths)
    rows = sum(batch.input_ids.shape[0] for batch in batches)
    return Measurement(
        step_times=times,
        tokens=tokens,
        supervised_tokens=supervised,
        flops=step_flops(counts, tokens, lm_head_tokens, squares),
        t_eff=t_eff(lengths),
        packing_fill=tokens / (rows * setting.seq_len),
        peak_allocated_gib=allocated,
        peak_reserved_gib=reserved,
        step_function=step_function,
    )


def run_setting(config: Config, setting: Setting, args: argparse.Namespace, device: torch.device):
    """(Measurement, None) or (None, why it was skipped). Out of memory is always a skip; other errors are
    skips too (a long sweep should not die on one configuration) unless --fail-fast."""
    reason = None
    measurement = None
    try:
        measurement = measure(config, setting, args, device)
    except torch.cuda.OutOfMemoryError as error:
        reason = "out of memory: " + str(error).splitlines()[0][:200]
    except Exception as error:
        if args.fail_fast:
            raise
        reason = f"error: {type(error).__name__}: " + (str(error).splitlines() or [""])[0][:300]
    reset_memory(device)  # after the except blocks: the traceback, and the model it holds, are gone
    return measurement, reason


def record(
    setting: Setting,
    measurement: Measurement | None,
    skipped: str | None,
    baseline_supervised_per_sec: float | None,
    peak_tflops: float,
    device: torch.device,
    measured_peak_tflops: float | None = None,
) -> dict:
    """One entry of `configurations` (numbers are null for a skipped configuration)."""
    entry = {
        "name": setting.name,
        "seq_len": setting.seq_len,
        "micro_batch_size": setting.micro_batch_size,
        "tokens_per_sec": None,
        "supervised_tokens_per_sec": None,
        "mfu": None,
        "mfu_vs_measured_peak": None,
        "peak_allocated_gib": None,
        "peak_reserved_gib": None,
        "speedup_vs_baseline": None,
        "step_time_s": None,
        "baseline": setting.baseline,
        "attention": setting.attention,
        "loss": "hf_labels_all_tokens" if setting.baseline else setting.loss,
        "loss_chunk_tokens": None if setting.baseline or setting.loss != "chunked" else setting.loss_chunk_tokens,
        "checkpointing": setting.checkpointing,
        "compile": setting.compile,
        "peak_tflops": peak_tflops,
        "measured_peak_tflops": measured_peak_tflops,
        "memory_source": memory_source(device),
        "skipped": skipped,
    }
    if measurement is None:
        return entry
    seconds = sum(measurement.step_times)
    supervised_per_sec = measurement.supervised_tokens / seconds
    entry.update(
        tokens_per_sec=measurement.tokens / seconds,
        supervised_tokens_per_sec=supervised_per_sec,
        mfu=measurement.flops / seconds / (peak_tflops * 1e12),
        mfu_vs_measured_peak=(
            measurement.flops / seconds / (measured_peak_tflops * 1e12) if measured_peak_tflops else None
        ),
        peak_allocated_gib=measurement.peak_allocated_gib,
        peak_reserved_gib=measurement.peak_reserved_gib,
        speedup_vs_baseline=supervised_per_sec / baseline_supervised_per_sec if baseline_supervised_per_sec else None,
        step_time_s=seconds / len(measurement.step_times),
        step_time_min_s=min(measurement.step_times),
        timed_steps=len(measurement.step_times),
        model_flops_per_token=measurement.flops / measurement.tokens,
        t_eff=measurement.t_eff,
        packing_fill=measurement.packing_fill,
        supervised_fraction=measurement.supervised_tokens / measurement.tokens,
        step_function=measurement.step_function,
    )
    if measurement.profile is not None:
        entry["profile"] = measurement.profile
    return entry


# --- the sweep ---------------------------------------------------------------------------------------------------


def window_settings(seq_len: int = WINDOW_SEQ_LEN) -> list[Setting]:
    """The default set on CUDA, sized for one short GPU window (benchmarks/README.md has the estimate): at seq
    4096, micro-batch 1, flex attention, each a question. Uncompiled first, so transformers compiles flex's
    kernels once for them; the lean one right after its compiled twin, whose layer graphs it reuses."""
    flex = functools.partial(Setting, seq_len, 1, attention="flex_attention")
    return [
        flex(checkpointing=True, loss="chunked", compile=False),  # fcloop as configs/gemma.toml runs it uncompiled
        flex(checkpointing=False, loss="chunked", compile=False),  # what checkpointing costs
        flex(checkpointing=True, loss="full_logits", compile=False),  # what the chunked loss saves
        flex(checkpointing=True, loss="chunked", compile=True),  # what compiling the layers gains
        flex(checkpointing=True, loss="chunked", compile=True, loss_chunk_tokens=LEAN_LOSS_CHUNK_TOKENS),  # lean
        flex(checkpointing=False, loss="chunked", compile=True),  # the fastest, if it fits
    ]


def pruned(setting: Setting) -> bool:
    """Combinations the full sweep leaves out (--no-prune keeps them):
    - compiled eager attention: eager is the CPU/reference path, its dense T x T masks dominate, and the
      compiled fast path is flex;
    - the full-logits loss with compiled layers or eager attention: it is measured against the chunked loss
      at otherwise equal settings (flex, not compiled), which is what it is there to show."""
    if setting.attention == "eager" and setting.compile:
        return True
    return setting.loss == "full_logits" and (setting.compile or setting.attention != "flex_attention")


def settings(args: argparse.Namespace) -> list[Setting]:
    if args.window:
        return window_settings()
    combos = [
        Setting(seq_len, micro_batch, checkpointing, attention, loss, compiled)
        for seq_len in args.seq_lens
        for micro_batch in args.micro_batches
        for checkpointing in args.checkpointing
        for attention in args.attention
        for loss in args.loss
        for compiled in args.compile
    ]
    return [setting for setting in combos if args.no_prune or not pruned(setting)]


def baseline_setting(seq_len: int) -> Setting:
    return Setting(seq_len, 1, checkpointing=True, attention="eager", loss="hf_labels", compile=False, baseline=True)


def skip_reason(setting: Setting, device: torch.device) -> str | None:
    if device.type == "cpu" and setting.attention == "flex_attention":
        return "flex attention has no backward on CPU"
    return None


def run_sweep(
    config: Config,
    args: argparse.Namespace,
    device: torch.device,
    measured_peak_tflops: float | None = None,
    after_each: Callable[[list[dict]], None] = lambda entries: None,
) -> list[dict]:
    """Every configuration's entry; `after_each` gets the entries so far after each one (to write them, so an
    interrupted run keeps what it measured)."""
    peaks = (args.peak_tflops, device, measured_peak_tflops)
    baseline = baseline_setting(args.baseline_seq_len)
    print(f"[benchmark] {baseline.name}", flush=True)
    measurement, skipped = run_setting(config, baseline, args, device)
    baseline_rate = measurement.supervised_tokens / sum(measurement.step_times) if measurement else None
    entries = [record(baseline, measurement, skipped, baseline_rate, *peaks)]
    print(f"[benchmark]   {summary_line(entries[-1])}", flush=True)
    after_each(entries)
    out_of_memory: list[Setting] = []
    for setting in settings(args):
        print(f"[benchmark] {setting.name}", flush=True)
        smaller = next((other for other in out_of_memory if other.at_most(setting)), None)
        skipped = skip_reason(setting, device)
        if smaller is not None:
            skipped = f"not run: {smaller.name} ran out of memory"
        measurement = None
        if skipped is None:
            measurement, skipped = run_setting(config, setting, args, device)
        if skipped and skipped.startswith("out of memory"):
            out_of_memory.append(setting)
        entries.append(record(setting, measurement, skipped, baseline_rate, *peaks))
        print(f"[benchmark]   {summary_line(entries[-1])}", flush=True)
        after_each(entries)
    return entries


def summary_line(entry: dict) -> str:
    if entry["skipped"]:
        return f"skipped: {entry['skipped']}"
    return (
        f"{entry['tokens_per_sec']:.0f} tok/s, {entry['supervised_tokens_per_sec']:.0f} supervised tok/s, "
        f"MFU {entry['mfu']:.1%} (of {entry['peak_tflops']:g} TFLOP/s), {entry['peak_allocated_gib']:.1f} GiB"
    )


# --- output ----------------------------------------------------------------------------------------------------


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    first = report["configurations"][0]
    peak = report["measured_matmul_peak"]
    lines = [
        f"# Training throughput on {report['device']}",
        "",
        f"torch {report['torch']}, transformers {report['transformers']}; command: `{report['command']}`",
        "",
        f"Measured matmul peak: {peak['best_tflops']:.1f} TFLOP/s ({peak['size']}^3 {peak['dtype']}, best of "
        f"{len(peak['tflops'])}); MFU is against the datasheet's {first['peak_tflops']:g} TFLOP/s, "
        "MFU* against the measured peak.",
        "",
        "MFU = FLOPs the step needs / step time / peak. "
        "Needed FLOPs per token: 4*N_mm + 6*N_lora + 6*L*(H*d_head)*T_eff, with lm_head only at supervised "
        "positions for fcloop (every position for the baseline, which needs them), T_eff = sum(n_i^2)/sum(n_i).",
        f"Memory: {first['memory_source']}.",
        "",
        "| configuration | seq | mb | tokens/s | supervised tokens/s | MFU | MFU* | peak alloc GiB "
        "| peak reserved GiB | step s | vs baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in report["configurations"]:
        if entry["skipped"]:
            head = f"| {entry['name']} | {entry['seq_len']} | {entry['micro_batch_size']} "
            lines.append(head + f"| skipped: {entry['skipped']} | | | | | | | |")
            continue
        mfu = None if entry["mfu"] is None else 100 * entry["mfu"]
        measured = entry["mfu_vs_measured_peak"]
        mfu_measured = None if measured is None else 100 * measured
        lines.append(
            f"| {entry['name']} | {entry['seq_len']} | {entry['micro_batch_size']} "
            f"| {number(entry['tokens_per_sec'], ',.0f')} | {number(entry['supervised_tokens_per_sec'], ',.0f')} "
            f"| {number(mfu, '.2f')}% | {number(mfu_measured, '.2f')}% | {number(entry['peak_allocated_gib'], '.2f')} "
            f"| {number(entry['peak_reserved_gib'], '.2f')} | {number(entry['step_time_s'], '.3f')} "
            f"| {number(entry['speedup_vs_baseline'], '.2f')}x |"
        )
    profiled = [entry for entry in report["configurations"] if entry.get("profile")]
    if profiled:
        lines += ["", "## Where the time goes (`--profile`)", "", KINDS_NOTE, ""]
        for entry in profiled:
            lines += kernel_markdown(entry["name"], entry["profile"])
    return "\n".join(lines) + "\n"


KINDS_NOTE = (
    "One extra step per configuration under torch.profiler (not in the timings above): kernels by self device "
    "time (CPU: operators by self CPU time), grouped by kinds read from their names (benchmarks/kernels.py)."
)


# --- command line ------------------------------------------------------------------------------------------------


def comma_list(kind: Callable[[str], object], choices: Sequence[str] | None = None):
    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if choices is not None and any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return [kind(item) for item in items]

    return parse


def on_off(text: str) -> bool:
    return text == "on"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="fcloop TOML (model, LoRA, precision, seed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="timed optimizer steps per configuration; 10, 5 in the window set")
    parser.add_argument("--warmup", type=int, help="untimed steps first (compilation happens here); 3, 2 in the "
                        "window set, 1 on CPU")  # fmt: skip
    parser.add_argument("--json", default="runs/benchmark/throughput.json", help="where to write the JSON")
    parser.add_argument("--markdown", help="where to write the markdown table (default: beside the JSON)")
    parser.add_argument("--seq-lens", type=comma_list(int), help="e.g. 2048,4096,8192")
    parser.add_argument("--micro-batches", type=comma_list(int), help="e.g. 1,2,4")
    parser.add_argument("--attention", type=comma_list(str, ATTENTIONS), help="eager,flex_attention")
    parser.add_argument("--loss", type=comma_list(str, LOSSES), help="chunked,full_logits")
    parser.add_argument("--checkpointing", type=comma_list(on_off, ("on", "off")), help="on,off")
    parser.add_argument("--compile", type=comma_list(on_off, ("on", "off")), help="off,on (per decoder layer)")
    parser.add_argument("--sweep", action="store_true", help="the full sweep instead of the GPU-window set")
    parser.add_argument("--quick", action="store_true", help="a small sweep at the config's seq len and batch")
    parser.add_argument("--no-prune", action="store_true", help="run every combination (see `pruned`)")
    parser.add_argument("--baseline-seq-len", type=int, help=f"baseline row length; {RECIPE_SEQ_LEN} (the recipe's)")
    parser.add_argument(
        "--peak-tflops", type=float, default=DATASHEET_PEAK_TFLOPS, help="the datasheet peak MFU divides by (989)"
    )
    parser.add_argument("--matmul-reps", type=int, default=5, help="timed products for the measured matmul peak")
    parser.add_argument("--fail-fast", action="store_true", help="stop on an error other than out of memory")
    parser.add_argument(
        "--profile", action="store_true", help="profile one more step of each configuration: where its time goes"
    )
    return parser.parse_args(list(argv))


DIMENSIONS = ("seq_lens", "micro_batches", "checkpointing", "attention", "loss", "compile")


def fill_defaults(args: argparse.Namespace, config: Config, device: torch.device) -> None:
    """What runs when not given on the command line. On CUDA: the GPU-window set (`window_settings`) unless
    --sweep, --quick or a sweep dimension is given; --sweep: the full sweep; --quick: the config's seq len,
    micro-batch and checkpointing. On CPU a smoke test like --quick at rows of at most CPU_MAX_SEQ_LEN
    tokens, the baseline at that length too."""
    cpu = device.type == "cpu"
    small = args.quick or cpu
    args.window = not (cpu or args.sweep or args.quick or any(getattr(args, key) is not None for key in DIMENSIONS))
    seq_len = min(config.data.max_seq_len, CPU_MAX_SEQ_LEN) if cpu else config.data.max_seq_len
    defaults = {
        "steps": 5 if args.window else 10,
        "warmup": 1 if cpu else 2 if args.window else 3,
        "baseline_seq_len": seq_len if cpu else RECIPE_SEQ_LEN,
        "seq_lens": [seq_len] if small else [2048, 4096, 8192],
        "micro_batches": [config.train.micro_batch_size] if small else [1, 2, 4],
        "checkpointing": [config.train.activation_checkpointing] if small else [True, False],
        "attention": ["eager"] if cpu else list(ATTENTIONS),
        "loss": ["chunked"] if small else list(LOSSES),
        "compile": [False] if cpu else [False, True],
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def benchmark_device(name: str) -> torch.device:
    """--device as a torch device, or an error that says which to use (never torch's own parse traceback)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        hint = " (a GPU is cuda in torch)" if name.lower().startswith("gpu") else ""
        raise FcloopError(
            f"--device {name}: not a device torch knows{hint}; use --device cuda or --device cpu"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FcloopError(f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu")
    return device


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    device = benchmark_device(args.device)
    config = precision_resolved(load_config(args.config), device)
    fill_defaults(args, config, device)
    peak = matmul_peak(device, args.matmul_reps)
    print(f"[benchmark] measured matmul peak: {peak.best_tflops:.1f} TFLOP/s ({peak.size}^3 {peak.dtype})", flush=True)
    report = {
        "device": device_description(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "command": "python -m benchmarks.throughput " + shlex.join(argv),
        "recompute_logits": config.train.recompute_logits,
        "datasheet_peak_tflops": args.peak_tflops,
        "measured_matmul_peak": peak.as_json(),
        "configurations": [],
    }
    json_path = Path(args.json)
    markdown_path = markdown_path_for(json_path, args.markdown)

    def write(entries: list[dict]) -> None:
        report["configurations"] = entries
        write_report(report, json_path, markdown(report), markdown_path)

    run_sweep(config, args, device, peak.best_tflops, after_each=write)
    print(markdown(report))
    print(f"[benchmark] wrote {json_path} and {markdown_path}")
    return report


def matmul_peak(device: torch.device, repetitions: int) -> MatmulPeak:
    """The device's dense matmul rate: bf16 8192^3 on CUDA, a small fp32 product on CPU (smoke only)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return measure_matmul_peak(device, MATMUL_SIZE[device.type], dtype, repetitions)


if __name__ == "__main__":
    sys.exit(run_cli(main))
