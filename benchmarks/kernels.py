"""Where a training step's time goes: one step under torch.profiler, its kernels summed by name and by kind.

`python -m benchmarks.throughput --profile` profiles one extra step of each configuration after its timed steps
(its time is not in the step times) and puts this summary in the JSON and the markdown. On CUDA the kernels are
the GPU's (self device time); on a CPU, the operators' self CPU time. `busy_share` is the kernels' summed time over
the step's wall time: on a GPU, well under 1 means the GPU waits for the host (kernel launches, Python), which
no faster kernel can fix. The kinds are read from kernel names (a heuristic, written out in KINDS).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import torch
from torch.autograd import DeviceType

# (kind, pattern on the kernel's name), first match wins. cuBLAS/CUTLASS GEMMs (sm90_xmma, nvjet, cutlass,
# gemm) are the matmuls; triton kernels named by inductor's templates for flex attention (triton_tem_fused_flex...,
# flex_attention...) are attention; inductor's pointwise/reduction/persistent kernels (triton_poi/red/per) are
# fused elementwise work; NCCL's kernels are communication; PyTorch's own elementwise and reduction kernels are
# eager elementwise work.
KINDS = (
    ("communication", r"nccl"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|aten::(mm|addmm|bmm|matmul|linear)\b"),
    ("attention", r"flex|attention|fmha|flash|sdpa|triton_tem"),
    ("fused elementwise (inductor)", r"triton_(poi|red|per)"),
    ("copies and memory", r"memcpy|memset|copy_|aten::(copy_|to|_to_copy|contiguous|clone|fill_|zero_)\b"),
    ("elementwise (eager)", r"elementwise|vectorized|reduce|aten::"),
)
TOP_KERNELS = 15


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def kernel_times(profiler: torch.profiler.profile, device: torch.device) -> list[tuple[str, float, int]]:
    """(name, self time in ms, calls) of every kernel (CUDA) or operator (CPU) the profiler saw."""
    rows = []
    for event in profiler.key_averages():
        if device.type == "cuda":
            if event.device_type != DeviceType.CUDA or event.self_device_time_total <= 0:
                continue
            micros = event.self_device_time_total
        else:
            if event.self_cpu_time_total <= 0 or event.key.startswith("ProfilerStep"):
                continue
            micros = event.self_cpu_time_total
        rows.append((event.key, micros / 1000.0, event.count))
    return sorted(rows, key=lambda row: -row[1])


def summarize_kernels(rows: list[tuple[str, float, int]], wall_ms: float, top: int = TOP_KERNELS) -> dict:
    """The summary put in the report: totals, shares by kind, and the `top` kernels."""
    total = sum(ms for _, ms, _ in rows)
    by_kind: dict[str, float] = {}
    for name, ms, _ in rows:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + ms
    return {
        "wall_ms": wall_ms,
        "kernel_ms": total,
        "busy_share": total / wall_ms if wall_ms > 0 else None,
        "kernels": len(rows),
        "launches": sum(calls for _, _, calls in rows),
        "by_kind": {
            kind: {"ms": ms, "share": ms / total if total else 0.0}
            for kind, ms in sorted(by_kind.items(), key=lambda item: -item[1])
        },
        "top": [
            {"name": name[:160], "ms": ms, "share": ms / total if total else 0.0, "calls": calls, "kind": kind_of(name)}
            for name, ms, calls in rows[:top]
        ],
    }


def profile_step(step: Callable[[int], None], index: int, device: torch.device) -> dict:
    """Run `step(index)` once under the profiler; its kernel summary."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        started = time.perf_counter()
        step(index)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall_ms = (time.perf_counter() - started) * 1000.0
    return summarize_kernels(kernel_times(profiler, device), wall_ms)


def markdown_lines(name: str, summary: dict) -> list[str]:
    """A configuration's profile as markdown: the shares by kind, then the top kernels."""
    if "error" in summary:
        return [f"### Profile: {name}", "", f"The profiled step failed: {summary['error']}", ""]
    busy = summary["busy_share"]
    lines = [
        f"### Profile: {name}",
        "",
        f"One step under torch.profiler: {summary['wall_ms']:.1f} ms wall, {summary['kernel_ms']:.1f} ms in "
        f"{summary['launches']:,} kernel calls ({summary['kernels']} distinct)"
        + ("" if busy is None else f", busy {busy:.0%} of the wall time")
        + ".",
        "",
        "| kind | ms | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {kind} | {v['ms']:.1f} | {v['share']:.1%} |" for kind, v in summary["by_kind"].items()]
    lines += ["", "| kernel | kind | calls | ms | share |", "|---|---|---:|---:|---:|"]
    for row in summary["top"]:
        cell = row["name"].replace("|", "\\|")
        lines.append(f"| `{cell}` | {row['kind']} | {row['calls']} | {row['ms']:.2f} | {row['share']:.1%} |")
    return [*lines, ""]
