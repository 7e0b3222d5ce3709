"""Data parallel on CPU with gloo: 2 processes train exactly like 1 process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from tiny_data import write_tiny_data

from fcloop.config import load_config
from fcloop.loop import train
from fcloop.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    train_file, eval_file = write_tiny_data(tmp_path / "data")
    common = [
        f"--data.train={train_file}",
        f"--data.eval={eval_file}",
        "--data.max_seq_len=256",
        "--train.max_steps=4",
        "--train.micro_batch_size=1",
        "--lora.dropout=0.0",
        "--eval.every_steps=1",
        "--checkpoint.every_steps=2",
    ]
    # Global batch 4 rows per step either way: 2 ranks x 1 row x 2 accumulation, or 1 x 1 x 4.
    two = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
            "-m", "fcloop.train", str(ROOT / "configs" / "tiny.toml"),
            f"--run.out_dir={tmp_path / 'two'}", "--train.grad_accum_steps=2", *common,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = load_config(
        ROOT / "configs" / "tiny.toml", [f"--run.out_dir={tmp_path / 'one'}", "--train.grad_accum_steps=4", *common]
    )
    train(one)

    def trajectory(folder: Path, key: str) -> list[float]:
        return [record[key] for record in read_metrics(folder) if key in record]

    one_eval, two_eval = trajectory(tmp_path / "one", "eval/loss"), trajectory(tmp_path / "two", "eval/loss")
    assert len(one_eval) == 5 and one_eval[-1] < one_eval[0]
    torch.testing.assert_close(two_eval, one_eval, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        trajectory(tmp_path / "two", "train/loss"), trajectory(tmp_path / "one", "train/loss"), rtol=1e-5, atol=0
    )
    # Rank 0 alone wrote the metrics (one line per step, not two) and the checkpoints.
    assert [r["step"] for r in read_metrics(tmp_path / "two") if "train/loss" in r] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "two").glob("step_*")) == ["step_000002", "step_000004"]
