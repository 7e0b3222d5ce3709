"""benchmarks.cpu_step: the four variants on the tiny model (2 warm-up + 2 timed steps, one round), and the
summary's arithmetic on hand-made runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from benchmarks import cpu_step
from benchmarks.cpu_step import (
    RESULTS,
    VARIANTS,
    compare_to_reference,
    default_json_path,
    markdown,
    summarize_variant,
    variant_overrides,
)
from fcloop.config import load_config
from fcloop.hardware import REPORTED_CPU_FLAGS, detect_hardware, plan_compute
from tests.tiny_data import write_tiny_data

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path, list[str]]:
    folder = tmp_path_factory.mktemp("cpu_step")
    train_file, _ = write_tiny_data(folder / "data", train_count=8, eval_count=1)
    overrides = [f"--data.train={train_file}", "--data.eval_fraction=0.0", "--data.max_seq_len=256"]
    # aot_eager: the compiled variants trace and run the same graphs without inductor's C++ builds (minutes on
    # a busy 2-core machine); one thread per process, as another process may hold the second core.
    argv = ["--config", str(CONFIGS / "tiny.toml"), "--steps", "2", "--rounds", "1", "--compile-backend", "aot_eager"]
    out = folder / "cpu_step.json"
    cpu_step.main([*argv, "--threads", "1", *overrides, "--json", str(out)])
    return json.loads(out.read_text()), out, overrides


def test_every_variant_runs_as_asked_through_the_real_loop(smoke):
    report, _, _ = smoke
    assert report["command"].startswith("python -m benchmarks.cpu_step --config ")
    assert (report["rounds"], report["warmup"], report["steps"], report["compile_backend"]) == (1, 2, 2, "aot_eager")
    assert report["model"] == "tiny:gemma2"
    for name, (precision, compiled) in VARIANTS.items():
        entry = report["variants"][name]
        assert entry["errors"] == [], entry["errors"]
        assert entry["ran_as"] == [{"precision": precision, "compile": compiled}]  # what its run.json says
        assert entry["timed_steps"] == 2 and len(entry["losses"]) == 4  # 2 warm-up + 2 timed optimizer steps
        assert entry["tokens_per_sec"] == entry["round_tokens_per_sec"][0] > 0
        assert entry["final_loss"] == entry["losses"][-1] and entry["final_loss_spread_across_rounds"] == 0.0
    # Compiled through aot_eager, fp32 is the same computation: the loss agrees far inside the tolerance.
    assert report["versus_fp32_eager"]["fp32_compiled"]["final_loss_relative_difference"] < 1e-5
    assert all(compared["within_tolerance"] for compared in report["versus_fp32_eager"].values())
    assert sorted(report["versus_fp32_eager"]) == ["bf16_compiled", "bf16_eager", "fp32_compiled"]


def test_the_report_describes_the_machine_and_what_auto_picks_there(smoke):
    report, out, overrides = smoke
    assert list(report["machine"]["flags"]) == list(REPORTED_CPU_FLAGS)
    assert report["machine"]["cores"] == os.cpu_count() and report["machine"]["torch_threads"] == 1
    assert set(report["versions"]) == {"python", "torch", "transformers", "peft"}
    assert report["versions"]["torch"] == torch.__version__
    config = load_config(CONFIGS / "tiny.toml", [*overrides, "--train.precision=auto"])
    expected = plan_compute(config.train, detect_hardware(torch.device("cpu")), "eager")
    assert report["auto"] == {
        "precision": expected.precision,
        "compile": expected.compile,
        "reasons": [expected.precision_reason, expected.compile_reason],
    }
    rows = [line.split(" | ")[0] for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("| ")]
    assert rows == ["| variant", "| fp32_eager", "| fp32_compiled", "| bf16_eager", "| bf16_compiled"]


# --- the pieces, on hand-made runs ---------------------------------------------------------------------------------


def run(rates: list[float], losses: list[float], precision: str = "fp32", compiled: bool = False) -> dict:
    return {"tokens_per_sec": rates, "losses": losses, "precision": precision, "compile": compiled, "wall_s": 5.0}


def test_the_median_is_over_every_rounds_timed_steps_and_a_failure_is_kept():
    runs = [run([1.0, 2.0, 10.0, 30.0], [4.0, 3.0, 2.0, 1.5]), {"error": "exit status 1:\nboom"}]
    runs.insert(1, run([1.0, 2.0, 20.0, 40.0], [4.0, 3.0, 2.0, 1.25]))
    entry = summarize_variant("fp32_eager", runs, warmup=2)
    assert entry["tokens_per_sec"] == 25.0  # median of 10, 30, 20, 40: the warm-up steps are left out
    assert entry["round_tokens_per_sec"] == [20.0, 30.0] and entry["timed_steps"] == 4
    assert entry["final_loss"] == 1.5 and entry["final_loss_spread_across_rounds"] == 0.25
    assert entry["rounds"] == 2 and entry["errors"] == ["exit status 1:\nboom"]
    failed = summarize_variant("bf16_compiled", [{"error": "exit status 1:\nInvalidCxxCompiler: no g++"}], warmup=2)
    assert failed == {
        "variant": "bf16_compiled",
        "precision": "bf16",
        "compile": True,
        "rounds": 0,
        "errors": ["exit status 1:\nInvalidCxxCompiler: no g++"],
    }


def test_speed_and_loss_against_fp32_eager():
    variants = {
        "fp32_eager": summarize_variant("fp32_eager", [run([0.0, 100.0], [3.0, 2.0])], warmup=1),
        "fp32_compiled": summarize_variant("fp32_compiled", [run([0.0, 80.0], [3.0, 2.01])], warmup=1),
        "bf16_eager": summarize_variant("bf16_eager", [{"error": "exit status 1:\nkilled"}], warmup=1),
        "bf16_compiled": summarize_variant("bf16_compiled", [run([0.0, 250.0], [3.0, 2.03], "bf16", True)], warmup=1),
    }
    compared = compare_to_reference(variants)
    assert compared == {
        "fp32_compiled": {
            "speedup": 0.8,
            "final_loss_relative_difference": pytest.approx(0.005),
            "tolerance": 1e-3,
            "within_tolerance": False,
        },
        "bf16_compiled": {
            "speedup": 2.5,
            "final_loss_relative_difference": pytest.approx(0.015),
            "tolerance": 2e-2,
            "within_tolerance": True,
        },
    }
    no_reference = {**variants, "fp32_eager": summarize_variant("fp32_eager", [{"error": "x"}], warmup=1)}
    assert compare_to_reference(no_reference) == {}
    report = {
        "machine": {"cpu": "Test CPU", "flags": {"avx2": True}, "cores": 2, "torch_threads": 2},
        "date": "2026-12-03 12:00 UTC",
        "command": "python -m benchmarks.cpu_step",
        "versions": {"torch": "2.13.0"},
        "config": "configs/demo.toml",
        "model": "pypi:gemma3-270m",
        "rounds": 1,
        "warmup": 1,
        "steps": 1,
        "compile_backend": "inductor",
        "auto": {"precision": "fp32", "compile": False, "reasons": ["precision fp32: x", "compile off: y"]},
        "variants": variants,
        "versus_fp32_eager": compared,
    }
    table = markdown(report)
    assert "| bf16_eager | failed: exit status 1: killed ||||||" in table
    assert "| fp32_compiled | 80.0 | 80.0 | 0.80x | 2.0100 | 5.0e-03 (OUTSIDE, tol 0.001) | 5 |" in table
    assert "| bf16_compiled | 250.0 | 250.0 | 2.50x | 2.0300 | 1.5e-02 (ok, tol 0.02) | 5 |" in table
    assert "## Errors\n\nbf16_eager:\n\n```\nexit status 1:\nkilled\n```" in table


def test_a_variant_is_the_config_with_its_precision_and_compile_and_nothing_else_to_do(tmp_path):
    args = argparse.Namespace(compile_backend="inductor", warmup=2, steps=8)
    assert variant_overrides("bf16_compiled", args, tmp_path / "run") == [
        f"--run.out_dir={tmp_path / 'run'}",
        "--train.precision=bf16",
        "--train.compile=true",
        "--train.compile_backend=inductor",
        "--train.max_steps=10",
        "--train.log_every_steps=1",
        "--eval.every_steps=0",
        "--checkpoint.every_steps=0",
        "--checkpoint.resume=never",
    ]


def test_the_default_result_file_is_named_after_the_cpu():
    assert (
        default_json_path("Intel(R) Xeon(R) Platinum 8480+") == RESULTS / "cpu_step_intel_r_xeon_r_platinum_8480.json"
    )
    assert default_json_path("AMD EPYC") == RESULTS / "cpu_step_amd_epyc.json"
    assert default_json_path("???") == RESULTS / "cpu_step_cpu.json"


def test_a_variant_past_its_time_limit_is_reported_not_waited_for(tmp_path):
    train_file, _ = write_tiny_data(tmp_path / "data", train_count=8, eval_count=1)
    args = argparse.Namespace(
        compile_backend="aot_eager", warmup=1, steps=1, threads=1, variant_timeout=0.01,
        config=str(CONFIGS / "tiny.toml"), overrides=[f"--data.train={train_file}", "--data.eval_fraction=0.0"],
    )  # fmt: skip
    run = cpu_step.run_variant("fp32_eager", 0, args, tmp_path)
    assert run["error"].startswith("timed out after 0.01 s:")
    assert summarize_variant("fp32_eager", [run], warmup=1)["errors"] == [run["error"]]


def test_a_failed_variant_is_one_cell_saying_how_it_ended():
    assert cpu_step.failure_summary(["timed out after 300 s:\nLoRA v_proj   258,048\ntotal 8,001,536"]) == (
        "timed out after 300 s"
    )
    assert cpu_step.failure_summary(["exit status 1:\nTraceback ...\nRuntimeError: a | b"]) == (
        "exit status 1: RuntimeError: a / b"
    )
    assert cpu_step.failure_summary([]) == "-"
