"""Data parallel on CPU with gloo, in both modes (ddp: whole model per rank; fsdp: FSDP2 fully_shard):
2 processes train exactly like 1 process with the same global batch, and resume exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_data import write_tiny_data

from fcloop.config import load_config
from fcloop.training.distributed import World, padding_passes
from fcloop.training.loop import train
from fcloop.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"train/tokens_per_sec", "memory/peak_gib"}


def common_overrides(data: tuple[Path, Path]) -> list[str]:
    train_file, eval_file = data
    # 9 rows per epoch at 4 rows per step: the epoch's last step has 1 row, so one rank has none and must
    # run a padding pass under FSDP; 5 eval rows at batch 1 likewise give the ranks 3 and 2 passes.
    return [
        f"--data.train={train_file}",
        f"--data.eval={eval_file}",
        "--data.max_seq_len=256",
        "--train.max_steps=4",
        "--train.micro_batch_size=1",
        "--lora.dropout=0.0",
        "--eval.every_steps=1",
        "--eval.batch_size=1",
        "--eval.max_cases=2",
        "--eval.max_new_tokens=8",
        "--checkpoint.every_steps=2",
    ]


def torchrun_two(out_dir: Path, data_parallel: str, overrides: list[str], resume: str = "never") -> None:
    """fcloop.train under 2 processes, through leave_probe: rank 1 leaves the process group half a second after
    rank 0 (rank 0 exits first), and each rank reports what was still alive when it left."""
    # Global batch 4 rows per step: 2 ranks x 1 row x 2 accumulation.
    probe_dir = out_dir.with_name(out_dir.name + "_leave_probe")
    probe_dir.mkdir()
    env = {**os.environ, "LEAVE_PROBE_DIR": str(probe_dir)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(Path(__file__).with_name("leave_probe.py")), str(ROOT / "configs" / "tiny.toml"),
            f"--run.out_dir={out_dir}", "--train.grad_accum_steps=2", f"--train.data_parallel={data_parallel}",
            f"--checkpoint.resume={resume}", *overrides,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The run's model was collected before each rank left: its collection at the interpreter's exit raced
    # gloo's worker threads and could abort a rank after a finished run (SIGABRT, "terminate called without an
    # active exception"), once in CI and 4 times in 36 in a small FSDP script with a rank held back.
    left = {path.name: json.loads(path.read_text()) for path in sorted(probe_dir.glob("rank*.json"))}
    assert left == {"rank0.json": {"parameters_alive": 0}, "rank1.json": {"parameters_alive": 0}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("data"), train_count=9, eval_count=5)


@pytest.fixture(scope="module")
def one_process_run(tiny_data, tmp_path_factory) -> Path:
    """The reference: 1 process, 1 row x 4 accumulation per step."""
    out_dir = tmp_path_factory.mktemp("one")
    overrides = [f"--run.out_dir={out_dir}", "--train.grad_accum_steps=4", *common_overrides(tiny_data)]
    train(load_config(ROOT / "configs" / "tiny.toml", overrides))
    return out_dir


def trajectory(folder: Path, key: str) -> list[float]:
    return [record[key] for record in read_metrics(folder) if key in record]


def without_timing(folder: Path) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in read_metrics(folder)]


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def interrupted_copy(run: Path, folder: Path) -> Path:
    """The run as if killed after step 2: the later checkpoint and the final adapter never got written."""
    shutil.copytree(run, folder)
    shutil.rmtree(folder / "step_000004")
    shutil.rmtree(folder / "final")
    return folder


def numbers(records: list[dict]) -> list[float]:
    return [value for record in records for value in record.values() if isinstance(value, float)]


@pytest.mark.parametrize("data_parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process_and_resume_exactly(data_parallel, tiny_data, one_process_run, tmp_path):
    two = tmp_path / "two"
    torchrun_two(two, data_parallel, common_overrides(tiny_data))

    one_eval, two_eval = trajectory(one_process_run, "eval/loss"), trajectory(two, "eval/loss")
    assert len(one_eval) == 5 and one_eval[-1] < one_eval[0]
    torch.testing.assert_close(two_eval, one_eval, rtol=1e-5, atol=0)
    two_train, one_train = trajectory(two, "train/loss"), trajectory(one_process_run, "train/loss")
    torch.testing.assert_close(two_train, one_train, rtol=1e-5, atol=0)
    # Generation ran in both modes (under FSDP on every rank, in step) and scored the same cases.
    assert trajectory(two, "eval/n") == [2] * 5
    assert trajectory(two, "eval/decision_accuracy") == trajectory(one_process_run, "eval/decision_accuracy")
    # Rank 0 alone wrote the metrics (one line per step, not two) and the checkpoints.
    assert [r["step"] for r in read_metrics(two) if "train/loss" in r] == [1, 2, 3, 4]
    assert sorted(p.name for p in two.glob("step_*")) == ["step_000002", "step_000004"]
    # The checkpoint holds whole tensors, the same names and shapes in either mode.
    final_two = adapter(two / "final")
    assert {k: v.shape for k, v in final_two.items()} == {
        k: v.shape for k, v in adapter(one_process_run / "final").items()
    }

    # Resumed under 2 processes in the same mode: the same run, bitwise.
    resumed = interrupted_copy(two, tmp_path / "resumed")
    torchrun_two(resumed, data_parallel, common_overrides(tiny_data), resume="auto")
    assert without_timing(resumed) == without_timing(two)
    final_resumed = adapter(resumed / "final")
    assert final_resumed.keys() == final_two.keys()
    for name, tensor in final_two.items():
        torch.testing.assert_close(final_resumed[name], tensor, rtol=0, atol=0, msg=name)

    # Resumed in the other mode (same checkpoint layout): the same run up to fp32 summation order.
    other = {"ddp": "fsdp", "fsdp": "ddp"}[data_parallel]
    switched = interrupted_copy(two, tmp_path / "switched")
    torchrun_two(switched, other, common_overrides(tiny_data), resume="auto")
    torch.testing.assert_close(numbers(without_timing(switched)), numbers(without_timing(two)), rtol=1e-5, atol=0)
    final_switched = adapter(switched / "final")
    for name, tensor in final_two.items():
        torch.testing.assert_close(final_switched[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def test_padding_passes_bring_every_rank_to_the_busiest_ranks_count():
    ranks = [World(rank=r, size=2, sharded=True) for r in range(2)]
    # 1 row: rank 0 runs it, rank 1 runs one padding pass.
    assert [padding_passes(len(range(1)[r::2]), 1, 1, w) for r, w in enumerate(ranks)] == [0, 1]
    # 5 rows at 2 per pass: rank 0 has 3 rows (2 passes), rank 1 has 2 rows (1 pass).
    assert [padding_passes(len(range(5)[r::2]), 5, 2, w) for r, w in enumerate(ranks)] == [0, 1]
    assert [padding_passes(len(range(4)[r::2]), 4, 1, w) for r, w in enumerate(ranks)] == [0, 0]
    # The replicated mode needs none: its only collective is one all-reduce per step.
    assert padding_passes(0, 1, 1, World(rank=1, size=2, sharded=False)) == 0
