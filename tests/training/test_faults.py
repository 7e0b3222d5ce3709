"""Faults: non-finite values, SIGTERM, kill -9 (mid-run and mid-checkpoint), and a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_data import write_tiny_data

import fcloop.evaluation.generation
import fcloop.training.checkpoint
import fcloop.training.loop
from fcloop.config import load_config
from fcloop.errors import run_cli
from fcloop.train import main as train_main
from fcloop.training.checkpoint import CheckpointWriteError, list_checkpoints
from fcloop.training.loop import train
from fcloop.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def overrides(out_dir: Path, data: tuple[Path, Path], *extra: str) -> list[str]:
    train_file, eval_file = data
    return [
        f"--run.out_dir={out_dir}",
        f"--data.train={train_file}",
        f"--data.eval={eval_file}",
        "--data.max_seq_len=256",
        "--train.micro_batch_size=1",
        "--train.grad_accum_steps=1",
        "--lora.dropout=0.1",
        "--checkpoint.resume=auto",
        *extra,
    ]


def config_for(out_dir: Path, data, *extra: str):
    return load_config(ROOT / "configs" / "tiny.toml", overrides(out_dir, data, *extra))


def comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("train/tokens_per_sec", "memory/peak_gib")} for r in records]


def poisoned_forward(poison_at_call: int):
    """forward_loss that returns NaN on its n-th training call (1-based), as an overflowing step would."""
    calls = {"count": 0}
    real = fcloop.training.loop.forward_loss

    def forward(model, *args, **kwargs):
        calls["count"] += model.training  # evaluation calls it too, in eval mode
        loss_sum, count = real(model, *args, **kwargs)
        return (loss_sum * float("nan") if model.training and calls["count"] == poison_at_call else loss_sum), count

    return forward


def test_nonfinite_loss_stops_naming_the_step_and_writes_no_nan_checkpoint(tmp_path, tiny_data, monkeypatch):
    config = config_for(tmp_path / "run", tiny_data, "--train.max_steps=4", "--checkpoint.every_steps=1")
    monkeypatch.setattr(fcloop.training.loop, "forward_loss", poisoned_forward(poison_at_call=3))
    with pytest.raises(FloatingPointError, match="at step 3"):
        train(config)
    checkpoints = list_checkpoints(config.run.out_dir)
    assert [p.name for p in checkpoints] == ["step_000001", "step_000002"]
    for folder in checkpoints:
        assert all(torch.isfinite(t).all() for t in load_file(folder / "adapter_model.safetensors").values())


def test_nonfinite_loss_can_skip_the_step(tmp_path, tiny_data, monkeypatch):
    config = config_for(tmp_path / "run", tiny_data, "--train.max_steps=4", "--train.on_nonfinite=skip")
    monkeypatch.setattr(fcloop.training.loop, "forward_loss", poisoned_forward(poison_at_call=2))
    state = train(config)
    assert (state.step, state.skipped_steps) == (4, 1)
    records = [r for r in read_metrics(config.run.out_dir) if "train/loss" in r]
    assert [r["train/skipped_steps"] for r in records] == [0, 1, 1, 1]
    adapter = load_file(Path(config.run.out_dir) / "final" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in adapter.values())


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, tiny_data, monkeypatch):
    config = config_for(tmp_path / "run", tiny_data, "--train.max_steps=4", "--checkpoint.every_steps=2")
    real_save = torch.save

    def save_until_full(obj, path, *args, **kwargs):
        if "step_000004" in str(path):
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(fcloop.training.checkpoint.torch, "save", save_until_full)
    with pytest.raises(
        CheckpointWriteError, match=r"step 4: the disk is full \(.*No space left on device.*step_000002 is intact"
    ):
        train(config)
    out = Path(config.run.out_dir)
    assert [p.name for p in list_checkpoints(out)] == ["step_000002"]
    assert not list(out.glob("*.partial"))


def start_training(config_overrides: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "fcloop.train", str(ROOT / "configs" / "tiny.toml"), *config_overrides]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training ended before the fault could be injected:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.02)


def logged_steps(out_dir: Path) -> int:
    path = out_dir / "metrics.jsonl"
    return len([line for line in path.read_text().splitlines() if '"train/loss"' in line]) if path.exists() else 0


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_exits_cleanly(tmp_path, tiny_data):
    out = tmp_path / "run"
    steps_only = ("--train.max_steps=500", "--eval.every_steps=0", "--checkpoint.every_steps=0")
    process = start_training(overrides(out, tiny_data, *steps_only))
    wait_for(lambda: logged_steps(out) >= 2, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    steps = logged_steps(out)
    assert f"SIGTERM: stopped after step {steps}, checkpoint written" in output
    assert [p.name for p in list_checkpoints(out)] == [f"step_{steps:06d}"]
    assert not (out / "final").exists()


@pytest.mark.parametrize("stopped_at", [0, 2, 4])  # before training, between steps, after the last step
def test_sigterm_during_an_evaluation_ends_it_at_once_and_the_resumed_run_does_it_again(
    tmp_path, tiny_data, monkeypatch, capsys, stopped_at
):
    """A preemption's grace period is seconds; an evaluation's generation on a CPU is minutes. A SIGTERM while it
    generates ends it within a decoding step; nothing of the cut evaluation is logged or written, the
    checkpoint says it is pending, no final/ is written before it is done, and the resumed run evaluates that
    step first: its metrics and predictions equal an uninterrupted run's."""
    common = (
        "--train.max_steps=4", "--eval.every_steps=2", "--checkpoint.every_steps=0",
        "--eval.max_cases=4", "--eval.batch_size=2", "--eval.max_new_tokens=48",
    )  # fmt: skip
    evaluating: dict = {"forwards_after_signal": 0}
    real_evaluation, real_left_pad = fcloop.training.loop.run_evaluation, fcloop.evaluation.generation.left_pad

    def tracked_evaluation(setup, step, *args, **kwargs):
        evaluating["step"] = step
        return real_evaluation(setup, step, *args, **kwargs)

    def left_pad_then_preempted(*args, **kwargs):  # the first batch of that evaluation is about to decode
        if evaluating.get("step") == stopped_at and "signalled" not in evaluating:
            evaluating["signalled"] = True
            os.kill(os.getpid(), signal.SIGTERM)
        return real_left_pad(*args, **kwargs)

    def count_model_forwards(module, args, output):
        if "signalled" in evaluating and type(module).__name__.endswith("ForCausalLM"):
            evaluating["forwards_after_signal"] += 1

    monkeypatch.setattr(fcloop.training.loop, "run_evaluation", tracked_evaluation)
    monkeypatch.setattr(fcloop.evaluation.generation, "left_pad", left_pad_then_preempted)
    out = tmp_path / "stopped"
    hook = torch.nn.modules.module.register_module_forward_hook(count_model_forwards)
    try:
        train(config_for(out, tiny_data, *common))
    finally:
        hook.remove()
    output = capsys.readouterr().out
    assert evaluating["forwards_after_signal"] == 1, evaluating  # the prompt's forward, then no decoding step
    assert f"the evaluation at step {stopped_at} was stopped part-way, kept nowhere, and runs again" in output
    assert [p.name for p in list_checkpoints(out)] == [f"step_{stopped_at:06d}"] and not (out / "final").exists()
    assert not [r for r in read_metrics(out) if r["step"] == stopped_at and "eval/loss" in r]
    assert not (out / "eval" / f"predictions_step_{stopped_at:06d}.jsonl").exists()
    monkeypatch.undo()
    train(config_for(out, tiny_data, *common))
    whole = config_for(tmp_path / "whole", tiny_data, *common)
    train(whole)
    assert comparable(read_metrics(out)) == comparable(read_metrics(whole.run.out_dir))
    for step in (0, 2, 4):
        name = f"eval/predictions_step_{step:06d}.jsonl"
        assert (out / name).read_text() == (Path(whole.run.out_dir) / name).read_text(), name
    assert (out / "final").is_dir()


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_data):
    common = ("--train.max_steps=10", "--checkpoint.every_steps=3", "--eval.every_steps=5")
    out = tmp_path / "killed"
    process = start_training(overrides(out, tiny_data, *common))
    wait_for(lambda: bool(list_checkpoints(out)), process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and not (out / "final").exists()
    # As if a later kill -9 had hit mid-write: a half-written checkpoint folder must be ignored.
    last = list_checkpoints(out)[-1]
    (out / "step_000009.partial").mkdir()
    (out / "step_000009.partial" / "adapter_model.safetensors").write_bytes(b"half a file")
    train(config_for(out, tiny_data, *common))
    uninterrupted = config_for(tmp_path / "whole", tiny_data, *common)
    train(uninterrupted)
    assert comparable(read_metrics(out)) == comparable(read_metrics(uninterrupted.run.out_dir))
    assert int(last.name.removeprefix("step_")) >= 3


# ---------------------------------------------------------------------------------------------------------
# A real full disk (a small tmpfs, filled at the moment a checkpoint file is written), through the command


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 16 MiB tmpfs (skipped where this process may not mount one), unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill_disk(folder: Path) -> Path:
    """Write a filler file until the disk is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as error:
            assert error.errno == 28  # ENOSPC
    return filler


@pytest.mark.parametrize("writer", ["adapter", "train state"])  # safetensors, and torch.save
def test_a_real_full_disk_mid_checkpoint_is_one_error_line_and_the_run_resumes(
    small_disk, tiny_data, capsys, monkeypatch, writer
):
    out = small_disk / "run"
    filled: list[Path] = []
    real_adapter, real_save = fcloop.training.checkpoint.save_adapter, torch.save

    def fill_then(real):
        def write(obj, path, *args, **kwargs):
            if "step_000002" in str(path) and not filled:
                filled.append(fill_disk(small_disk))
            return real(obj, path, *args, **kwargs)

        return write

    if writer == "adapter":
        monkeypatch.setattr(fcloop.training.checkpoint, "save_adapter", fill_then(real_adapter))
    else:
        monkeypatch.setattr(fcloop.training.checkpoint.torch, "save", fill_then(real_save))
    args = [str(ROOT / "configs" / "tiny.toml"), *overrides(out, tiny_data, "--train.max_steps=3")]
    args += ["--checkpoint.every_steps=1", "--eval.every_steps=0"]
    assert run_cli(train_main, args) == 1
    # The message follows the progress bar's last redraw (\r) on stderr, as a terminal shows it.
    lines = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n")]
    message = next(line for line in lines if line.startswith("error: "))
    hint = lines[lines.index(message) + 1]
    assert message.startswith("error: could not write the checkpoint for step 2: the disk is full (")
    kept = f"the previous checkpoint {out}/step_000001 is intact"
    assert message.endswith(f'); {kept}; free some space, then resume with checkpoint.resume = "auto"')
    assert hint == "(FCLOOP_DEBUG=1 shows the traceback)"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step_")) == ["step_000001"]  # no .partial
    # Space freed, the same command resumes from the intact checkpoint and finishes.
    filled[0].unlink()
    monkeypatch.undo()
    assert run_cli(train_main, args) == 0
    assert f"resumed from {out}/step_000001 at step 1" in capsys.readouterr().out
    assert (out / "final" / "manifest.json").exists()
