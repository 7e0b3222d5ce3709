"""Runs where nothing can be installed: the CLI and the benchmarks without `datasets`, and the GPU window's
script as a CPU dry run (benchmarks/device_window.sh with DEVICE_WINDOW_DRY_RUN=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIDE_DATASETS = Path(__file__).resolve().parents[1] / "no_datasets"  # its sitecustomize makes `datasets` unimportable


def environment(**extra: str) -> dict[str, str]:
    # The worktree first (as the brief asks), then the folder that hides `datasets` from every subprocess.
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HIDE_DATASETS}", **extra}


def test_datasets_is_hidden_by_the_helper_folder():
    probe = subprocess.run(
        [sys.executable, "-c", "import datasets"], env=environment(), capture_output=True, text=True, cwd=ROOT
    )
    assert probe.returncode == 1 and "No module named 'datasets' (hidden by tests/no_datasets)" in probe.stderr


def test_training_cli_runs_without_datasets(tmp_path):
    command = [
        sys.executable, "-m", "fcloop.train", "configs/tiny.toml", f"--run.out_dir={tmp_path / 'run'}",
        "--train.max_steps=1", "--eval.every_steps=0", "--checkpoint.every_steps=0", "--data.max_seq_len=1024",
    ]  # fmt: skip
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()


def test_device_window_dry_run_runs_every_part_without_datasets(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "benchmarks/device_window.sh"],
        env=environment(
            OUT=str(out), DEVICE_WINDOW_DRY_RUN="1", PYTHON=sys.executable, SMOKE_RUN_DIR=str(tmp_path / "smoke")
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    parts = [line.split("\t")[:2] for line in (out / "parts.tsv").read_text().splitlines()]
    assert parts == [
        ["env", "0"], ["gpu_check", "0"], ["throughput", "0"], ["gpu_smoke", "0"], ["versus_trl", "skipped"]
    ]  # fmt: skip
    log = (out / "device_window.log").read_text()
    assert "torch " in log and "datasets importable: no" in log  # the environment's facts, first in the log
    assert len(list(out.iterdir())) <= 8  # the device tool brings back 8 files at most
    smoke = json.loads((out / "gpu_smoke.json").read_text())
    assert smoke["ok"] and all(smoke["checks"].values()) and smoke["steps"] == 2
    assert [record["step"] for record in smoke["evaluations"]] == [0, 2]
    assert json.loads((out / "gpu_check.json").read_text())["ok"]  # the tiny model's fp32 and bf16 check
    configurations = json.loads((out / "throughput.json").read_text())["configurations"]
    assert configurations and all(entry["profile"]["kernel_ms"] > 0 for entry in configurations)
    assert (out / "gpu_smoke_metrics.jsonl").is_file()
    assert "[gpu_smoke] ok   no recompilation" in log


def window(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "benchmarks/device_window.sh"],
        env=environment(OUT=str(tmp_path / "out"), DEVICE_WINDOW_DRY_RUN="1", PYTHON=sys.executable, **extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_device_window_runs_only_the_parts_asked_for(tmp_path):
    """Two device commands can split the window: DEVICE_WINDOW_PARTS names the parts; an unknown name is an error
    before anything runs or is written."""
    result = window(tmp_path, DEVICE_WINDOW_PARTS="gpu_check")
    assert result.returncode == 0, result.stdout[-3000:]
    parts = [line.split("\t")[:2] for line in (tmp_path / "out" / "parts.tsv").read_text().splitlines()]
    assert parts == [
        ["env", "0"], ["gpu_check", "0"], ["throughput", "left out"], ["gpu_smoke", "left out"],
        ["versus_trl", "left out"],
    ]  # fmt: skip
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "device_window.log", "gpu_check.json", "parts.tsv"
    ]  # fmt: skip
    typo = window(tmp_path / "typo", DEVICE_WINDOW_PARTS="gpu_check,throughtput")
    assert typo.returncode == 2 and "unknown part 'throughtput'" in typo.stderr
    assert not (tmp_path / "typo").exists()
