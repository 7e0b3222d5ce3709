"""The training loop: one `train()` that reads top to bottom in the order a person thinks.

set up -> (resume) -> evaluate at step 0 -> for each optimizer step: set lr, fetch the step's rows, forward
and backward each micro-batch (loss summed over supervised tokens, each times its data.emphasis_pattern weight,
divided by the step's supervised token count), clip, step, log, evaluate, checkpoint -> save the final adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fcloop.config import Config, TrainConfig, save_config
from fcloop.data.load import Datasets, load_datasets, too_long_hint
from fcloop.data.packing import Batch, collate, packing_efficiency, plan_rows, supervised_targets
from fcloop.data.tokenization import Encoded, existing_token_ids, prepare_tokenizer
from fcloop.evaluation.bfcl import describe, evaluate_bfcl, prompt_limit, warnings_for
from fcloop.evaluation.generation import (
    GenerationStopped,
    build_cases,
    evaluate_tool_calls,
    too_long_warning,
    write_predictions,
)
from fcloop.hardware import detect_hardware, plan_compute, record
from fcloop.model.compile import CompileCounter, compile_for_training
from fcloop.model.flex_attention import attention_masks_for, refuse_unfused_flex_under_checkpointing
from fcloop.model.load import (
    attention_implementation,
    base_config,
    enable_activation_checkpointing,
    load_model,
    load_tokenizer,
    model_parts,
)
from fcloop.model.lora import (
    add_token_rows,
    apply_lora,
    parameter_groups,
    save_adapter,
    select_trainable,
    trainable_table,
)
from fcloop.model.loss import DEFAULT_CHUNK_SIZE, supervised_cross_entropy
from fcloop.model.sharding import (
    full_optimizer_state,
    full_tensor,
    full_trainable_state,
    fully_shard_model,
    root_forward_loss,
    root_gathered,
)
from fcloop.training.checkpoint import (
    RunState,
    find_resume_checkpoint,
    load_adapter,
    load_train_state,
    rng_states,
    save_checkpoint,
    write_manifest,
)
from fcloop.training.distributed import (
    World,
    any_rank,
    barrier,
    gather_objects,
    init_world,
    padding_passes,
    shard,
    shutdown,
    sum_gradients,
    sum_scalars,
)
from fcloop.training.fingerprint import resume_report, run_fingerprint, saved_settings
from fcloop.training.metrics import MetricsLogger, NullLogger, read_metrics, write_run_file
from fcloop.training.run_folder import prepare_new_run, run_folder_lock
from fcloop.training.summary import before_after_table


def learning_rate(step: int, config: TrainConfig, total_steps: int) -> float:
    """lr for optimizer step `step` (0-based): linear warmup to lr, then decay to lr * min_lr_ratio."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    if config.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        factor = 1.0 - progress
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * factor)


SCHEDULE_KEYS = ("lr", "warmup_steps", "schedule", "min_lr_ratio", "max_steps", "epochs")


def schedule_change_note(
    saved: dict[str, Any], config: TrainConfig, steps_per_epoch: int, step: int, total_steps: int
) -> str | None:
    """On resume at `step` (0-based), the lr the checkpoint's schedule would give next beside the one this
    config gives, when they differ: a longer train.max_steps moves the cosine back up, which a changed-key line
    alone does not show."""
    old_values = {key: saved[f"train.{key}"] for key in SCHEDULE_KEYS if f"train.{key}" in saved}
    old = dataclasses.replace(config, **old_values)
    old_total = old.max_steps or old.epochs * steps_per_epoch
    old_lr, new_lr = learning_rate(step, old, old_total), learning_rate(step, config, total_steps)
    if math.isclose(old_lr, new_lr, rel_tol=1e-9):
        return None
    return (
        f"lr on resume: step {step + 1} of {total_steps} gets lr {new_lr:.3g}; the checkpoint's schedule "
        f"({old_total} steps) would give {old_lr:.3g}"
    )


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":  # "auto" must be resolved first, or it would silently run fp32
        raise ValueError(f"precision must be bf16 or fp32 (resolve auto with fcloop.hardware), got {precision!r}")
    return contextlib.nullcontext()


def forward_loss(
    model,
    batch: Batch,
    precision: str,
    device: torch.device,
    recompute_logits: bool = True,
    mask_compile_backend: str | None = None,
    loss_chunk_tokens: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, int]:
    """(summed NLL over the batch's supervised targets, their count), documents isolated by the mask; the
    loss's logits are computed `loss_chunk_tokens` supervised tokens at a time.
    `mask_compile_backend`: build flex block masks with the compiled builder (train.compile)."""
    parts = model_parts(model)
    mask_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model_config = base_config(model)
    if model_config._attn_implementation == "flex_attention":
        refuse_unfused_flex_under_checkpointing(parts.decoder)
    masks = attention_masks_for(
        batch, model_config, model_config._attn_implementation, mask_dtype, mask_compile_backend
    )
    with autocast(device, precision):
        hidden = parts.decoder(
            input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=masks
        ).last_hidden_state
        return supervised_cross_entropy(
            hidden,
            batch.target_ids,
            parts.lm_head,
            parts.final_logit_softcap,
            chunk_size=loss_chunk_tokens,
            recompute=recompute_logits,
            target_weights=batch.target_weights,
        )


LossFn = Callable[[torch.nn.Module, Batch, str, torch.device], tuple[torch.Tensor, int]]


def fixed_batch(rows: Sequence[Sequence[Encoded]], pad_id: int, shape: tuple[int, int] | None) -> Batch:
    """`collate(rows)`, or with `shape` = (rows, tokens) padded to exactly that shape, as compiled code needs
    (one graph, no recompilation per width). Added rows are all padding: their targets are ignored, so they
    add nothing to the loss or its gradient."""
    if shape is None:
        return collate(rows, pad_id)
    row_count, tokens = shape
    return collate([*rows, *[[]] * (row_count - len(rows))], pad_id, pad_to=tokens)


@torch.no_grad()
def evaluate_loss(
    model,
    examples: list[Encoded],
    capacity: int,
    packing: bool,
    batch_size: int,
    precision: str,
    device,
    pad_id: int,
    world: World | None = None,
    loss_fn: LossFn | None = None,
    fixed_shape: bool = False,
) -> float | None:
    """Token-weighted mean NLL over every supervised token of the eval set (each rank takes a share).
    `fixed_shape`: every batch is `batch_size` rows of `capacity` tokens (compiled code; see `fixed_batch`)."""
    world = world or World()
    loss_fn = loss_fn or forward_loss
    was_training = model.training
    model.eval()
    all_rows = plan_rows([len(e) for e in examples], capacity, packing, seed=0, epoch=0)
    rows = shard(all_rows, world)
    shape = (batch_size, capacity) if fixed_shape else None
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chosen = [[examples[i] for i in row] for row in rows[start : start + batch_size]]
        loss_sum, supervised = loss_fn(model, fixed_batch(chosen, pad_id, shape).to(device), precision, device)
        total += float(loss_sum)
        count += supervised
    for _ in range(padding_passes(len(rows), len(all_rows), batch_size, world)):
        padding_batch = fixed_batch([[examples[i] for i in all_rows[0]]], pad_id, shape)
        loss_fn(model, padding_batch.to(device), precision, device)
    model.train(was_training)
    total, count = sum_scalars([total, float(count)], world)
    return total / count if count else None  # None: nothing to measure (data.eval holds only bfcl: sources)


def train_step(
    model,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    micro_batches: list[Batch],
    precision: str,
    max_grad_norm: float,
    device: torch.device,
    loss_fn: LossFn | None = None,
    world: World | None = None,
    supervised_tokens: int | None = None,
    padding_batches: Sequence[Batch] = (),
) -> tuple[float, float]:
    """One optimizer step: forward/backward every micro-batch, sum gradients across ranks, clip, and update
    only if the loss and gradient norm are finite. Returns (mean loss of the step, gradient norm).

    `supervised_tokens` is the whole step's count over all ranks (default: these micro-batches' own).
    `padding_batches` run forward and backward with their loss times zero: under FSDP a rank short of rows
    must still join every collective of the busiest rank's passes."""
    world = world or World()
    loss_fn = loss_fn or forward_loss  # looked up at call time, so the step always runs the module's loss
    step_supervised = supervised_tokens or sum(batch.supervised_tokens for batch in micro_batches)
    # FSDP averages gradients over ranks where the explicit all-reduce sums them: scale so both give the sum.
    rank_scale = world.size if world.sharded else 1
    step_loss_sum = 0.0
    for batch in micro_batches:
        loss_sum, _ = loss_fn(model, batch.to(device), precision, device)
        # Divide by the whole step's supervised count, not per micro-batch: every token weighs the same (times its
        # emphasis weight) whichever micro-batch it falls in.
        (loss_sum * rank_scale / step_supervised).backward()
        step_loss_sum += float(loss_sum.detach())
    for batch in padding_batches:
        loss_sum, _ = loss_fn(model, batch.to(device), precision, device)
        (loss_sum * 0.0).backward()
    sum_gradients(parameters, world)
    (step_loss_sum,) = sum_scalars([step_loss_sum], world)
    max_norm = max_grad_norm if max_grad_norm > 0 else float("inf")
    grad_norm = float(full_tensor(torch.nn.utils.clip_grad_norm_(parameters, max_norm)))
    loss = step_loss_sum / step_supervised
    if math.isfinite(loss) and math.isfinite(grad_norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm


@dataclass
class DataPlan:
    """Which rows each optimizer step takes. Steps never span epochs; an epoch's last step may be short."""

    examples: list[Encoded]
    capacity: int
    packing: bool
    seed: int
    rows_per_step: int

    _cached: tuple[int, list[list[int]]] | None = field(default=None, init=False, repr=False)

    def rows(self, epoch: int) -> list[list[int]]:
        # Planned once per epoch, not once per step: packing the whole data set is O(n log n).
        if self._cached is None or self._cached[0] != epoch:
            lengths = [len(e) for e in self.examples]
            self._cached = (epoch, plan_rows(lengths, self.capacity, self.packing, self.seed, epoch))
        return self._cached[1]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.rows(0)) / self.rows_per_step)

    def step_rows(self, state: RunState) -> tuple[list[list[Encoded]], int, int]:
        """(rows of documents for the step at `state`, epoch after it, data cursor after it)."""
        epoch_rows = self.rows(state.epoch)
        chosen = epoch_rows[state.row_in_epoch : state.row_in_epoch + self.rows_per_step]
        cursor = state.row_in_epoch + len(chosen)
        epoch, cursor = (state.epoch + 1, 0) if cursor >= len(epoch_rows) else (state.epoch, cursor)
        return [[self.examples[i] for i in row] for row in chosen], epoch, cursor


def generations_markdown(predictions: list[dict]) -> str:
    """A few generations side by side with what was expected, for TensorBoard's text tab."""
    blocks = [
        f"**{p['id']}**\n\nexpected:\n\n    {p['expected']!r}\n\ngenerated:\n\n    {p['generated']!r}"
        for p in predictions
    ]
    return "\n\n---\n\n".join(blocks)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory, or on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


class StopRequest:
    """SIGTERM / SIGINT set a flag instead of killing the process: the loop finishes the step in flight,
    writes a checkpoint and returns. A second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclass(frozen=True)
class EvaluationSetup:
    """What every evaluation pass of a run reads: fixed once the model and data are set up."""

    runner: torch.nn.Module  # what the loss pass calls: the model itself, or FSDP's root around it
    model: torch.nn.Module
    tokenizer: Any
    data: Datasets
    cases: list  # the fixed sample of tool-call cases scored by generation (fcloop.evaluation.generation)
    config: Config
    precision: str  # train.precision resolved for this machine: "bf16" or "fp32"
    device: torch.device
    world: World
    loss_fn: LossFn
    compiled: bool
    bfcl_limit: int  # the longest BFCL prompt that leaves room for max_new_tokens
    out_dir: Path


def run_evaluation(
    setup: EvaluationSetup,
    step: int,
    compile_counter: CompileCounter,
    logger,
    note: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> bool:
    """One evaluation pass at `step`: eval loss, the tool-call cases and BFCL's cases by generation; logged,
    and every prediction written under out_dir/eval (rank 0). False when `should_stop` ended the generation
    part-way: then nothing of this pass is logged or written (half an evaluation would read as a whole one)."""
    try:
        values, predictions, bfcl_records = evaluation_results(setup, compile_counter, should_stop)
    except GenerationStopped:
        return False
    eval_folder = setup.out_dir / "eval"
    if predictions is not None:
        logger.text("eval/generations", generations_markdown(predictions[:3]), step)
        if setup.world.is_main:  # every case, to read what the model did (TensorBoard shows the first few)
            write_predictions(eval_folder / f"predictions_step_{step:06d}.jsonl", predictions)
    if bfcl_records is not None and setup.world.is_main:
        write_predictions(eval_folder / f"bfcl_predictions_step_{step:06d}.jsonl", bfcl_records)
    logger.log(step, values)
    note(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float)))
    return True


def evaluation_results(
    setup: EvaluationSetup, compile_counter: CompileCounter, should_stop: Callable[[], bool]
) -> tuple[dict[str, float | int | None], list[dict] | None, list[dict] | None]:
    """(metrics, tool-call predictions, BFCL records) of one evaluation pass; a list is None where this rank
    generated none. GenerationStopped when `should_stop` ended a generation."""
    config, world, model, runner = setup.config, setup.world, setup.model, setup.runner
    data, tokenizer = setup.data, setup.tokenizer
    with compile_counter.phase("eval"):
        eval_loss = evaluate_loss(
            runner, data.eval, config.data.max_seq_len, config.data.packing, config.eval.batch_size,
            setup.precision, setup.device, tokenizer.pad_token_id, world, setup.loss_fn,
            fixed_shape=setup.compiled,
        )  # fmt: skip
    values: dict[str, float | int | None] = {"eval/loss": eval_loss}
    predictions = bfcl_records = None
    # Rank 0 generates; under FSDP every rank must join each layer's gathering, so all generate the same.
    if setup.cases and (world.is_main or world.sharded):
        # Generation runs uncompiled with eager attention (fcloop.evaluation.generation.generate): it compiles
        # nothing, so a graph here would be a recompilation of the training graphs' functions.
        gathered = root_gathered(runner) if world.sharded else contextlib.nullcontext(model)
        with gathered as whole_model, compile_counter.phase("generate", compiles=False):
            scores, predictions = evaluate_tool_calls(
                whole_model, tokenizer, setup.cases, config.data.think_instruction, config.eval.max_new_tokens,
                config.eval.batch_size, setup.device, synced_ranks=world.sharded, should_stop=should_stop,
                constrain_calls=config.eval.constrain_calls,
            )  # fmt: skip
        values.update({f"eval/{name}": value for name, value in scores.items()})
    if data.bfcl_cases and (world.is_main or world.sharded):  # BFCL's cases, scored by its rules
        gathered = root_gathered(runner) if world.sharded else contextlib.nullcontext(model)
        with gathered as whole_model, compile_counter.phase("generate", compiles=False):
            bfcl_scores, bfcl_records = evaluate_bfcl(
                whole_model, tokenizer, data.bfcl_cases, config.data.think_instruction, config.eval.max_new_tokens,
                config.eval.batch_size, setup.device, setup.bfcl_limit, synced_ranks=world.sharded,
                should_stop=should_stop, constrain_calls=config.eval.constrain_calls,
            )  # fmt: skip
        values.update(bfcl_scores)
    if setup.compiled:
        values.update(compile_counter.metrics())
    return values, predictions, bfcl_records


def save_step_checkpoint(
    out_dir: Path, model, optimizer: torch.optim.Optimizer, state: RunState, keep_last: int, fingerprint, world: World
) -> None:
    """A checkpoint of step `state.step`. Collectives first, on every rank: whole RNG states, adapter and
    optimizer state to rank 0, which writes; then every rank waits for the write."""
    rng_per_rank = gather_objects(rng_states(), world)
    adapter_state, optimizer_state = full_trainable_state(model), full_optimizer_state(optimizer)
    if world.is_main:
        save_checkpoint(out_dir, model, optimizer_state, state, keep_last, rng_per_rank, adapter_state, fingerprint)
    barrier(world)


def train(config: Config, stop_after_steps: int | None = None) -> RunState:
    """Train per `config`; `stop_after_steps` ends the process early (as an interruption would) for tests."""
    world = init_world(config.train.data_parallel)
    say = print if world.is_main else (lambda *args, **kwargs: None)  # one copy of each message, not N
    # Rank 0 alone writes the run folder, so it alone holds the folder's lock, for the whole run.
    with run_folder_lock(Path(config.run.out_dir), say) if world.is_main else contextlib.nullcontext():
        state = train_in_folder(config, world, stop_after_steps)
    # The model and optimizer went out of scope with train_in_folder; shutdown collects what they leave.
    shutdown(world)
    return state


def train_in_folder(config: Config, world: World, stop_after_steps: int | None) -> RunState:
    """`train` once the run folder is this process's own."""
    device = world.device
    out_dir = Path(config.run.out_dir)
    say = print if world.is_main else (lambda *args, **kwargs: None)
    train_cfg = config.train
    # bf16 or fp32, compiled or not: what "auto" means on this machine, and why (fcloop.hardware).
    hardware = detect_hardware(device)
    compute = plan_compute(train_cfg, hardware, attention_implementation(config.model, device), world.sharded)
    say(compute.precision_reason)
    say(compute.compile_reason)
    if world.is_main:
        prepare_new_run(out_dir, config.checkpoint.resume, say)  # never a new run mixed into an old one
        save_config(config, out_dir / "config.toml")  # as given: "auto" stays "auto"; run.json holds the choice
        write_run_file(out_dir, record(hardware, compute))
    precision = compute.precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    # --- data ---
    tokenizer = load_tokenizer(config.model)
    new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    trained_existing_ids = existing_token_ids(tokenizer, config.lora.train_token_rows)
    data = load_datasets(config.data, tokenizer, config.run.seed)
    say("train data:\n  " + "\n  ".join(data.train_stats.lines()))
    if hint := too_long_hint(data.train_stats, config.data.max_seq_len):
        say(f"note: {hint}")
    if data.eval:
        say("eval data:\n  " + "\n  ".join(data.eval_stats.lines()))
    if data.bfcl_cases:
        say(describe(data.bfcl_cases))
    plan = DataPlan(
        data.train, config.data.max_seq_len, config.data.packing, config.run.seed,
        train_cfg.micro_batch_size * train_cfg.grad_accum_steps * world.size,
    )  # fmt: skip
    total_steps = train_cfg.max_steps or train_cfg.epochs * plan.steps_per_epoch()
    epoch0_rows = plan.rows(0)
    efficiency = packing_efficiency(epoch0_rows, [len(e) for e in data.train], config.data.max_seq_len)
    say(f"rows per epoch: {len(epoch0_rows)}, packing efficiency {efficiency:.1%}, optimizer steps: {total_steps}")
    # Resume only into the same run: a verified checkpoint (damaged ones skipped) whose data and shapes match.
    fingerprint = run_fingerprint(config, tokenizer, data.train, world.size, precision)
    resume_from = find_resume_checkpoint(out_dir, config.checkpoint.resume, say)
    for line in resume_report(resume_from, fingerprint) if resume_from else []:
        say(line)

    # --- model: frozen base, LoRA + new-token rows trainable, nothing else ---
    torch.manual_seed(config.run.seed)
    model = load_model(config.model, len(tokenizer), dtype, device, config.run.seed)
    add_token_rows(model, len(tokenizer), new_token_ids)
    if train_cfg.activation_checkpointing:
        enable_activation_checkpointing(model)
    model = apply_lora(model, config.lora, new_token_ids, trained_existing_ids)
    select_trainable(model)
    say(trainable_table(model))
    if resume_from is not None:
        load_adapter(resume_from, model)  # before sharding, while the model holds whole tensors
    compiled = compute.compile
    if compiled:
        compile_for_training(model_parts(model).decoder, train_cfg.compile_backend)
    elif base_config(model)._attn_implementation == "flex_attention":
        # transformers compiles flex attention itself; its silent fallback to the unfused kernel would be slow
        # and, under activation checkpointing, give wrong gradients (fcloop.model.flex_attention): an error instead.
        torch._dynamo.config.fail_on_recompile_limit_hit = True
    compile_counter = CompileCounter()
    # Compiled code needs fixed shapes: every row padded to max_seq_len, not to its batch's longest row. One
    # length, not a few buckets: packed rows are mostly near full (data/packing_efficiency), so buckets would
    # save little, and each would add a graph per layer type and mode.
    micro_shape = (train_cfg.micro_batch_size, config.data.max_seq_len) if compiled else None
    # `runner` is what the loss and eval passes call: the model itself, or FSDP's root around it.
    model_loss = functools.partial(
        forward_loss,
        recompute_logits=train_cfg.recompute_logits,
        loss_chunk_tokens=train_cfg.loss_chunk_tokens,
        mask_compile_backend=train_cfg.compile_backend if compiled else None,
    )
    runner, loss_fn = (
        (fully_shard_model(model, model_loss), root_forward_loss) if world.sharded else (model, model_loss)
    )
    trainable = select_trainable(model)  # after sharding the parameters are new (DTensor) objects
    # Same LoRA init on every rank (seeded above); from here each rank draws its own dropout masks.
    torch.manual_seed(config.run.seed + world.rank)
    parameters = [p for _, p in trainable]
    optimizer = torch.optim.AdamW(
        parameter_groups(trainable, train_cfg.weight_decay),
        lr=train_cfg.lr,
        betas=tuple(train_cfg.adam_betas),
        fused=device.type == "cuda",
    )
    model.train()

    state = RunState()
    if resume_from is not None:
        state = load_train_state(resume_from, optimizer, world.rank, world.size)
        say(f"resumed from {resume_from} at step {state.step}")
        if state.step >= total_steps and (out_dir / "final").is_dir():
            # Already done: training on would add nothing, and rewriting final/ would change a finished run.
            say(
                f"already complete: {out_dir} trained its {total_steps} steps and its adapter is in "
                f"{out_dir / 'final'}; nothing to do (raise train.max_steps to train on)"
            )
            return state
        saved = saved_settings(resume_from)
        if saved and (
            schedule_line := schedule_change_note(saved, train_cfg, plan.steps_per_epoch(), state.step, total_steps)
        ):
            say(schedule_line)
    logger = (
        MetricsLogger(out_dir, resume_after_step=state.step if resume_from else None) if world.is_main else NullLogger()
    )
    evaluate = bool(data.eval or data.bfcl_cases) and config.eval.every_steps > 0
    # A fixed sample of tool-call cases, scored by generating each assistant turn (rank 0 only).
    cases = build_cases(data.eval_conversations, config.eval.max_cases) if config.eval.max_cases else []
    if warning := too_long_warning(cases, tokenizer, config.eval.max_new_tokens):
        say(warning)
    bfcl_limit = prompt_limit(model, config.data.max_seq_len)
    for warning in warnings_for(
        data.bfcl_cases, tokenizer, config.data.think_instruction, bfcl_limit, config.eval.max_new_tokens
    ):
        say(warning)

    evaluation = EvaluationSetup(
        runner, model, tokenizer, data, cases, config, precision, device, world, loss_fn, compiled, bfcl_limit, out_dir
    )

    progress = tqdm(total=total_steps, initial=state.step, desc="train", dynamic_ncols=True, disable=not world.is_main)
    note = progress.write if world.is_main else (lambda *args, **kwargs: None)  # tqdm.write prints even if disabled
    # Installed before the step-0 evaluation: a SIGTERM there (a preemption) must stop cleanly, not kill.
    # The bar is closed however the block ends: an error message then starts on its own line, not after the bar.
    with StopRequest() as stop, contextlib.closing(progress):
        # Asked while an evaluation generates, so that a SIGTERM ends it within a decoding step rather than
        # minutes later. Under FSDP every rank generates in step: the answer must be the same on every rank.
        def stop_requested() -> bool:
            return any_rank(stop.requested is not None, world) if world.sharded else stop.requested is not None

        def evaluate_at_this_step() -> None:
            completed = run_evaluation(evaluation, state.step, compile_counter, logger, note, stop_requested)
            state.evaluation_pending = any_rank(not completed, world)  # rank 0 alone generates without FSDP

        def stopped_note(where: str, checkpoint: str) -> str:
            pending = f"; the evaluation at step {state.step} was stopped part-way, kept nowhere, and runs again"
            return (
                f"{stop.requested}: stopped {where}, {checkpoint}{pending if state.evaluation_pending else ''}; "
                'resume with checkpoint.resume = "auto"'
            )

        loaded_pending = state.evaluation_pending
        if evaluate and ((state.step == 0 and resume_from is None) or state.evaluation_pending):
            evaluate_at_this_step()
        stopped_before_training = any_rank(stop.requested is not None, world)
        if stopped_before_training:
            # A checkpoint even at step 0: the folder now holds this run's logs, and "auto" continues only from
            # one. A resumed run's own checkpoint still holds this state unless its pending evaluation is done.
            if resume_from is None or state.evaluation_pending != loaded_pending:
                save_step_checkpoint(out_dir, model, optimizer, state, config.checkpoint.keep_last, fingerprint, world)
                note(stopped_note(f"at step {state.step}, before training", "checkpoint written"))
            else:
                note(stopped_note(f"at step {state.step}, before training", f"its checkpoint {resume_from.name} kept"))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        while state.step < total_steps and not stopped_before_training:
            if stop_after_steps is not None and state.step >= stop_after_steps:
                break
            started = time.perf_counter()
            lr = learning_rate(state.step, train_cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # The step's rows are fixed by the seed; how they split into micro-batches does not change the math.
            rows, next_epoch, next_cursor = plan.step_rows(state)
            # Counted over the whole step (all ranks' rows), so the normalization is global.
            step_supervised = sum(supervised_targets(doc) for row in rows for doc in row)
            step_tokens = sum(len(doc) for row in rows for doc in row)
            local_rows = shard(rows, world)
            micro_batches = [
                fixed_batch(local_rows[i : i + train_cfg.micro_batch_size], tokenizer.pad_token_id, micro_shape)
                for i in range(0, len(local_rows), train_cfg.micro_batch_size)
            ]
            padding = padding_passes(len(local_rows), len(rows), train_cfg.micro_batch_size, world)
            with compile_counter.phase("train"):
                loss, grad_norm = train_step(
                    runner, optimizer, parameters, micro_batches, precision, train_cfg.max_grad_norm,
                    device, loss_fn=loss_fn, world=world, supervised_tokens=step_supervised,
                    padding_batches=[fixed_batch(rows[:1], tokenizer.pad_token_id, micro_shape)] * padding,
                )  # fmt: skip
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                if train_cfg.on_nonfinite == "stop":
                    raise FloatingPointError(nonfinite_message(loss, grad_norm, state.step + 1, compiled))
                state.skipped_steps += 1
                note(f"step {state.step + 1}: non-finite loss or gradient, update skipped")

            elapsed = time.perf_counter() - started
            state.step += 1
            state.epoch, state.row_in_epoch = next_epoch, next_cursor
            state.tokens_seen += step_tokens
            state.supervised_tokens_seen += step_supervised
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{step_tokens / elapsed:.0f}")
            if state.step % train_cfg.log_every_steps == 0 or state.step == total_steps:
                metrics = {
                    "train/loss": loss,
                    "train/lr": lr,
                    "train/grad_norm": grad_norm,
                    "train/tokens": state.tokens_seen,
                    "train/supervised_tokens": state.supervised_tokens_seen,
                    "train/tokens_per_sec": step_tokens / elapsed,
                    "train/epoch": state.epoch,
                    "train/skipped_steps": state.skipped_steps,
                    "data/packing_efficiency": efficiency,
                    "memory/peak_gib": peak_memory_gib(device),
                    **(compile_counter.metrics() if compiled else {}),
                }
                logger.log(state.step, metrics)
            if evaluate and (state.step % config.eval.every_steps == 0 or state.step == total_steps):
                evaluate_at_this_step()
            stop_now = any_rank(stop.requested is not None, world)
            if stop_now or (config.checkpoint.every_steps and state.step % config.checkpoint.every_steps == 0):
                save_step_checkpoint(out_dir, model, optimizer, state, config.checkpoint.keep_last, fingerprint, world)
            if stop_now:
                note(stopped_note(f"after step {state.step}", "checkpoint written"))
                break

    progress.close()
    logger.close()
    if state.step >= total_steps and not state.evaluation_pending:  # the last evaluation belongs to the run
        adapter_state = full_trainable_state(model)  # a collective: every rank
        if world.is_main:
            save_final(out_dir / "final", model, tokenizer, config, adapter_state)
            # The first evaluation (the base model, when the run started at step 0) beside the last.
            for line in before_after_table(read_metrics(out_dir)):
                say(line)
    return state


def nonfinite_message(loss: float, grad_norm: float, step: int, compiled: bool) -> str:
    """What stops a run at a non-finite loss or gradient, and what to try. At the first step no update has been
    applied yet, so the learning rate cannot be the cause: the computation itself is."""
    said = (
        f"non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {step}; no update was applied and no "
        "checkpoint written."
    )
    if step > 1:
        return f'{said} Lower train.lr, or set train.on_nonfinite = "skip".'
    if compiled:
        return f"{said} At the first step, with compiled layers: try train.compile = false, and report it."
    return f"{said} At the first step, before any update: check the model's weights and train.precision."


def save_final(
    folder: Path, model, tokenizer, config: Config, adapter_state: dict[str, torch.Tensor] | None = None
) -> None:
    """The adapter, the tokenizer with its chat template, and the config: everything inference needs."""
    # Written under a temporary name and renamed, as checkpoints are: final/ is complete or absent.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_adapter(model, partial, adapter_state)
    tokenizer.save_pretrained(partial)
    save_config(config, partial / "config.toml")
    write_manifest(partial)  # last: it vouches for every file above (fcloop.eval and fcloop.export verify it)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
