"""`python -m benchmarks.gpu_smoke [--config configs/gpu_smoke.toml] [--json PATH] [--section.key=value ...]`

The real `fcloop.training.loop.train` interrupted and resumed: the first run stops after the first checkpoint
(checkpoint.every_steps), as a killed job would, and the second resumes from it and runs to train.max_steps.
Then the run is checked: every step logged once with a finite loss, evaluations (with generation) at step 0,
every eval.every_steps and the last step, no recompilation, the final adapter written. The report (JSON) says
which checks passed, how long each part took and what the metrics were; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import transformers

from fcloop.config import Config, load_config, split_overrides
from fcloop.training.loop import train
from fcloop.training.metrics import read_metrics

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gpu_smoke.toml"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__.split("\n\n")[1])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default: gpu_smoke.toml)")
    parser.add_argument("--json", type=Path, help="write the report here (default: run.out_dir/gpu_smoke.json)")
    return parser.parse_args(rest), overrides


def expected_eval_steps(config: Config) -> list[int]:
    total, every = config.train.max_steps, config.eval.every_steps
    return sorted({0, *range(every, total + 1, every), total})


def run_checks(config: Config, out_dir: Path, records: list[dict]) -> dict[str, bool]:
    total, resumed_at = config.train.max_steps, config.checkpoint.every_steps
    train_records = [r for r in records if "train/loss" in r]
    eval_records = [r for r in records if "eval/loss" in r]
    compile_records = [r for r in records if "compile/recompiles" in r]
    return {
        "every step logged once": [r["step"] for r in train_records] == list(range(1, total + 1)),
        "finite losses": all(math.isfinite(r["train/loss"]) for r in train_records)
        and all(math.isfinite(r["eval/loss"]) for r in eval_records),
        "evaluations at the expected steps": [r["step"] for r in eval_records] == expected_eval_steps(config),
        "generation scored at every evaluation": all(r.get("eval/n") == config.eval.max_cases for r in eval_records),
        "checkpoint the resume started from": (out_dir / f"step_{resumed_at:06d}").is_dir(),
        "no recompilation": all(r["compile/recompiles"] == 0 for r in compile_records),
        "final adapter": (out_dir / "final" / "adapter_model.safetensors").is_file(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, overrides = parse_args(argv)
    config = load_config(args.config, overrides)
    out_dir = Path(config.run.out_dir)
    stop_at = config.checkpoint.every_steps
    if not 0 < stop_at < config.train.max_steps or config.checkpoint.resume != "auto":
        raise SystemExit(
            f"{args.config}: the smoke run needs 0 < checkpoint.every_steps < train.max_steps and "
            f'checkpoint.resume = "auto" (got {stop_at}, {config.train.max_steps}, {config.checkpoint.resume!r})'
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"{out_dir}: run.out_dir must be empty or absent, or the first run would resume an old one")
    started = time.perf_counter()
    train(config, stop_after_steps=stop_at)  # ends after the first checkpoint, as an interruption would
    first_seconds = time.perf_counter() - started
    state = train(config)  # resumes from that checkpoint
    resumed_seconds = time.perf_counter() - started - first_seconds
    records = read_metrics(out_dir)
    checks = run_checks(config, out_dir, records)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "command": "python -m benchmarks.gpu_smoke " + shlex.join(argv),
        "ok": all(checks.values()),
        "checks": checks,
        "steps": state.step,
        "seconds_first_run": round(first_seconds, 1),
        "seconds_resumed_run": round(resumed_seconds, 1),
        "train": [r for r in records if "train/loss" in r][-1:],
        "evaluations": [r for r in records if "eval/loss" in r],
    }
    json_path = args.json or out_dir / "gpu_smoke.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, passed in checks.items():
        print(f"[gpu_smoke] {'ok  ' if passed else 'FAIL'} {name}")
    print(f"[gpu_smoke] first run {first_seconds:.0f} s, resumed run {resumed_seconds:.0f} s; wrote {json_path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
