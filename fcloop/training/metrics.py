"""Where metrics go: `metrics.jsonl` (one object per logged step) and TensorBoard, under the same names; and
`run.json`, what the run computes with on this machine (fcloop.hardware: precision, compile, and why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"


class MetricsLogger:
    """Writes each record to metrics.jsonl and its numbers as TensorBoard scalars with identical tags."""

    def __init__(self, out_dir: str | Path, resume_after_step: int | None = None) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_after_step is None:
            self.path.write_text("")
        else:
            # Lines past the checkpoint were written by the interrupted run and will be written again.
            kept = [line for line in self._read_lines() if json.loads(line)["step"] <= resume_after_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=resume_after_step)

    def _read_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text().splitlines() if line.strip()]

    def log(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **values}
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        for tag, value in values.items():
            if isinstance(value, int | float):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class NullLogger:
    """What ranks other than 0 log to: nothing."""

    def log(self, step: int, values: dict[str, Any]) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def close(self) -> None:
        pass


def write_run_file(out_dir: str | Path, values: dict[str, Any]) -> None:
    """run.json: written at each start of the run (a resumed run may run on another machine; its checkpoints'
    fingerprint holds the precision each was trained with, and resuming checks it)."""
    path = Path(out_dir) / RUN_FILE
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


def read_run_file(out_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / RUN_FILE).read_text(encoding="utf-8"))
