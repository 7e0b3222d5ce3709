"""One run per folder: a lock against a second process, no new run over an old one, a clean stop at step 0."""

from __future__ import annotations

import errno
import fractions
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_data import write_tiny_data

import fcloop.training.loop
from fcloop.errors import run_cli
from fcloop.train import main as train_main
from fcloop.training.checkpoint import list_checkpoints
from fcloop.training.metrics import read_metrics
from fcloop.training.run_folder import LOCK_FILE

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")
DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("data"), train_count=8, eval_count=2)


def overrides(out_dir: Path, data, *extra: str) -> list[str]:
    train_file, eval_file = data
    return [
        f"--run.out_dir={out_dir}",
        f"--data.train={train_file}",
        f"--data.eval={eval_file}",
        "--data.max_seq_len=256",
        "--train.micro_batch_size=1",
        "--train.grad_accum_steps=1",
        "--train.max_steps=2",
        "--eval.every_steps=0",
        "--checkpoint.every_steps=1",
        *extra,
    ]


def run_train(capsys, out_dir: Path, data, *extra: str) -> tuple[int, str, str]:
    code = run_cli(train_main, [TINY, *overrides(out_dir, data, *extra)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def old_run(data, tmp_path_factory) -> Path:
    """A finished 2-step run: step_000001, step_000002, final/, metrics."""
    out = tmp_path_factory.mktemp("old") / "run"
    code = run_cli(train_main, [TINY, *overrides(out, data, "--checkpoint.resume=never")])
    assert code == 0
    return out


@pytest.fixture
def run_copy(old_run, tmp_path) -> Path:
    return Path(shutil.copytree(old_run, tmp_path / "run"))


RUN_FILES = [
    LOCK_FILE,
    "config.toml",
    "final",
    "metrics.jsonl",
    "run.json",
    "step_000001",
    "step_000002",
    "tensorboard",
]


# ---------------------------------------------------------------------------------------------------------
# The lock: two real processes on one folder


def start_training(out_dir: Path, data, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "fcloop.train", TINY, *overrides(out_dir, data, *extra)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(out_dir: Path) -> int:
    path = out_dir / "metrics.jsonl"
    return len([line for line in path.read_text().splitlines() if '"train/loss"' in line]) if path.exists() else 0


def test_a_second_process_on_the_folder_is_refused_naming_the_holder(tmp_path, data):
    out = tmp_path / "run"
    long_run = ("--train.max_steps=500", "--checkpoint.every_steps=0", "--checkpoint.resume=never")
    first = start_training(out, data, *long_run)
    deadline = time.monotonic() + 180
    while logged_steps(out) < 1:  # the lock is held from before the first step
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run did not start"
        time.sleep(0.05)
    second = subprocess.run(
        [sys.executable, "-m", "fcloop.train", TINY, *overrides(out, data, "--train.lr=5e-3", *long_run)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=120)
    assert second.returncode == 1
    assert second.stderr == (
        f"error: {out} is in use by another fcloop.train (pid {first.pid} on host {socket.gethostname()}); wait for "
        f"it to end, or choose another run.out_dir\n{DEBUG_HINT}\n"
    )
    assert "Traceback" not in second.stdout + second.stderr
    # The folder holds the first run alone: its steps, once each, and its SIGTERM checkpoint.
    assert first.returncode == 0, first_err
    steps = logged_steps(out)
    assert [r["step"] for r in read_metrics(out) if "train/loss" in r] == list(range(1, steps + 1))
    assert [p.name for p in list_checkpoints(out)] == [f"step_{steps:06d}"]
    assert (out / LOCK_FILE).read_text() == ""  # released


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, data, capsys):
    out = tmp_path / "run"
    out.mkdir()
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid names no process now
    dead_pid = ended.pid
    (out / LOCK_FILE).write_text(f"host {socket.gethostname()} pid {dead_pid}\n")
    code, stdout, err = run_train(capsys, out, data, "--checkpoint.resume=never")
    assert code == 0 and "error" not in err  # stderr holds only the progress bar
    assert f"note: taking over the stale lock {out / LOCK_FILE} (pid {dead_pid} on this host is no longer running)" in (
        stdout.splitlines()
    )
    assert listing(out) == RUN_FILES
    assert (out / LOCK_FILE).read_text() == ""


def test_a_read_only_run_folder_is_one_error_line(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "readonly" / "run"

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    code, _, err = run_train(capsys, out, data)
    assert code == 1
    assert err == (
        f"error: run.out_dir {out} cannot be written (read-only file system); set run.out_dir to a folder you can "
        f"write\n{DEBUG_HINT}\n"
    )
    assert not (tmp_path / "readonly").exists()


# ---------------------------------------------------------------------------------------------------------
# A new run over an old one


def test_a_new_run_into_a_folder_holding_another_is_refused(run_copy, data, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run_copy.rglob("*")}
    code, _, err = run_train(capsys, run_copy, data, "--checkpoint.resume=never", "--train.lr=5e-3")
    assert code == 1
    assert err == (
        f"error: {run_copy} already holds another run (step_000001, step_000002, final, metrics.jsonl, tensorboard); "
        'checkpoint.resume = "never" will not mix a new run into it: choose a new run.out_dir, or set '
        'checkpoint.resume = "restart" to delete that run and start over, or "auto" to continue it\n'
        f"{DEBUG_HINT}\n"
    )
    after = {p.name: p.stat().st_mtime_ns for p in run_copy.rglob("*") if p.name != LOCK_FILE}
    assert after == {name: time for name, time in before.items() if name != LOCK_FILE}  # nothing touched


def test_restart_deletes_the_old_run_in_one_printed_step(run_copy, data, capsys):
    code, stdout, err = run_train(
        capsys, run_copy, data, "--checkpoint.resume=restart", "--train.max_steps=3", "--checkpoint.every_steps=3"
    )
    assert code == 0 and "error" not in err  # stderr holds only the progress bar
    assert (
        f"restart: deleting the previous run in {run_copy}: step_000001, step_000002, final, metrics.jsonl, tensorboard"
        in stdout.splitlines()
    )
    assert listing(run_copy) == [
        LOCK_FILE,
        "config.toml",
        "final",
        "metrics.jsonl",
        "run.json",
        "step_000003",
        "tensorboard",
    ]
    assert [r["step"] for r in read_metrics(run_copy) if "train/loss" in r] == [1, 2, 3]  # the new run alone
    assert len(list((run_copy / "tensorboard").iterdir())) == 1  # one event file: the new run's


def test_restart_into_an_empty_folder_just_starts(tmp_path, data, capsys):
    code, stdout, err = run_train(capsys, tmp_path / "run", data, "--checkpoint.resume=restart")
    assert code == 0 and "error" not in err  # stderr holds only the progress bar
    assert not [line for line in stdout.splitlines() if line.startswith("restart:")]
    assert listing(tmp_path / "run") == RUN_FILES


# ---------------------------------------------------------------------------------------------------------
# SIGTERM as the step-0 evaluation ends


def test_sigterm_as_the_first_evaluation_ends_keeps_it_and_stops_cleanly(tmp_path, data, capsys, monkeypatch):
    real = fcloop.training.loop.run_evaluation

    def evaluation_preempted(setup, step, *args, **kwargs):
        completed = real(setup, step, *args, **kwargs)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # as a preemption would, just as the evaluation ends
        return completed

    monkeypatch.setattr(fcloop.training.loop, "run_evaluation", evaluation_preempted)
    out = tmp_path / "run"
    code, stdout, err = run_train(capsys, out, data, "--eval.every_steps=1", "--checkpoint.resume=never")
    assert code == 0 and "error" not in err  # stderr holds only the progress bar
    assert (
        'SIGTERM: stopped at step 0, before training, checkpoint written; resume with checkpoint.resume = "auto"'
        in stdout.splitlines()
    )
    assert [r["step"] for r in read_metrics(out)] == [0]
    assert [p.name for p in list_checkpoints(out)] == ["step_000000"] and not (out / "final").exists()
    # Run again as the message says: it continues from that checkpoint, without a second step-0 evaluation.
    monkeypatch.undo()
    code, stdout, err = run_train(capsys, out, data, "--eval.every_steps=1", "--checkpoint.resume=auto")
    assert code == 0 and "resumed from" in stdout and (out / "final").is_dir()
    assert [(r["step"], "eval/loss" in r) for r in read_metrics(out)] == [
        (0, True), (1, False), (1, True), (2, False), (2, True)
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Running a run's command again


def test_a_finished_run_run_again_says_it_is_complete_and_writes_nothing(run_copy, data, capsys):
    before = {str(p): p.stat().st_mtime_ns for p in run_copy.rglob("*") if p.name != LOCK_FILE}
    code, stdout, err = run_train(capsys, run_copy, data, "--checkpoint.resume=auto")
    assert code == 0 and "error" not in err
    assert stdout.splitlines()[-1] == (
        f"already complete: {run_copy} trained its 2 steps and its adapter is in {run_copy / 'final'}; nothing to "
        "do (raise train.max_steps to train on)"
    )
    after = {str(p): p.stat().st_mtime_ns for p in run_copy.rglob("*") if p.name != LOCK_FILE}
    # Only what every start rewrites (the config as given, and run.json) changed: final/, checkpoints, metrics
    # and event files are as they were.
    changed = {Path(name).name for name in after if after[name] != before.get(name)}
    assert changed == {"config.toml", "run.json"}


def test_raising_max_steps_on_resume_prints_the_old_and_new_lr(run_copy, data, capsys):
    code, stdout, _ = run_train(capsys, run_copy, data, "--checkpoint.resume=auto", "--train.max_steps=4")
    assert code == 0
    # Warmup 1, cosine over the rest: step 3 of 4 is a third of the way down (lr 7.5e-4), where the 2-step
    # schedule had already ended at its floor (min_lr_ratio 0 -> lr 0).
    assert "lr on resume: step 3 of 4 gets lr 0.00075; the checkpoint's schedule (2 steps) would give 0" in (
        stdout.splitlines()
    )


# ---------------------------------------------------------------------------------------------------------
# A train state that is not a plain-tensor pickle


def test_a_train_state_fcloop_did_not_write_is_refused_without_loading_it(run_copy, data, capsys):
    step = run_copy / "step_000002"
    # Objects torch's weights_only loader refuses (a Fraction stands for any class a crafted file could name).
    torch.save({"run_state": fractions.Fraction(1, 2)}, step / "train_state.pt")
    (step / "manifest.json").unlink()  # as a file written with no manifest, or with one crafted to match
    code, _, err = run_train(capsys, run_copy, data, "--checkpoint.resume=auto", "--train.max_steps=3")
    assert code == 1
    assert err.split("\n")[-3:] == [
        f"error: {step}/train_state.pt is not a checkpoint fcloop wrote: it holds objects other than tensors and "
        "plain values, so it was not loaded (and must not be loaded with weights_only=False, which would run code "
        "from the file); resume from a checkpoint fcloop wrote, or start a new run",
        DEBUG_HINT,
        "",
    ]
    assert "Traceback" not in err and "weights_only=True" not in err


def test_auto_into_a_run_without_checkpoints_is_refused(run_copy, data, capsys):
    for step in list_checkpoints(run_copy):
        shutil.rmtree(step)  # as a run with checkpoint.every_steps = 0 leaves its folder
    code, _, err = run_train(capsys, run_copy, data, "--checkpoint.resume=auto")
    assert code == 1
    assert err == (
        f"error: {run_copy} holds a run (final, metrics.jsonl, tensorboard) but no checkpoint to continue it from; a "
        'new run will not be mixed into it: choose a new run.out_dir, or set checkpoint.resume = "restart" to delete '
        f"that run and start over\n{DEBUG_HINT}\n"
    )
    assert listing(run_copy) == [LOCK_FILE, "config.toml", "final", "metrics.jsonl", "run.json", "tensorboard"]


def test_a_run_folder_that_is_a_file_is_one_error_line(tmp_path, data, capsys):
    out = tmp_path / "run"
    out.write_text("not a folder\n")
    code, _, err = run_train(capsys, out, data)
    assert (code, err) == (
        1,
        f"error: run.out_dir {out} is a file, not a folder; set run.out_dir to a folder\n{DEBUG_HINT}\n",
    )
    assert out.read_text() == "not a folder\n"
