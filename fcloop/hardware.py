"""Precision and compile chosen by the hardware: what `train.precision = "auto"` and `train.compile = "auto"`
resolve to on the machine a run (or an evaluation) runs on, each with a one-line reason that the run prints.

Measured on a 2-core CPU with AMX (Gemma-3-270M, configs/demo.toml, median tokens/s of the training step):
fp32 eager 215, fp32 with the decoder layers compiled by inductor 159, bf16 autocast 299-351, bf16 autocast with
the layers compiled by inductor 588. (That compiled figure is inductor's 512-bit code, which on another AMX Xeon,
2026-12-05, gave NaN gradients; with the 256-bit code fcloop now compiles CPU layers with, fcloop.model.compile,
that machine ran 283 and 335 against bf16 eager's 270 and 266, 12-step runs.)
A CPU without native bf16 (AVX2 only) emulates bf16 matmuls, many times
slower than fp32. So `auto` is bf16 where the device computes bf16 natively and fp32 elsewhere, and compiles on
CUDA, and on a CPU only where that measured speed-up applies (native bf16, eager attention, inductor).

Detection (`detect_hardware`) is kept apart from the choice (`plan_compute`, a pure function of the settings
and a `Hardware`), so every row of the table is testable on any machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from fcloop.config import TrainConfig

# CPU flags (named as /proc/cpuinfo names them) that do bf16 matmuls natively, best first, with their names.
NATIVE_BF16_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
# The flags a run and a benchmark record: what decides precision, and the vector widths that explain a speed.
REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# torch.cpu.get_capabilities() spells one of them differently.
TORCH_CAPABILITY_NAMES = {"avx512f": "avx512_f"}
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Hardware:
    """What the choice of precision and compile depends on, as detected (or as a test writes it)."""

    device_type: str
    """The device the run computes on: "cuda" or "cpu" (another type gets fp32 and no compile)."""
    device_name: str = ""
    """The GPU's or the CPU's model name, for the record."""
    cuda_bf16: bool = False
    """CUDA only: whether the GPU computes bf16 natively (`torch.cuda.is_bf16_supported`, emulation not counted)."""
    cpu_flags: frozenset[str] = frozenset()
    """CPU only: which of REPORTED_CPU_FLAGS the CPU has."""
    cpp_compiler: str | None = None
    """CPU only: the C++ compiler inductor builds its CPU code with; None when there is none, or when it was
    not looked up (only a CPU with native bf16 compiles under `auto`; the look-up imports inductor, seconds)."""


@dataclass(frozen=True)
class ComputePlan:
    """What a run computes with, and why (one line each, printed at the start and saved in run.json)."""

    precision: str
    """"bf16" (bf16 weights and autocast) or "fp32"."""
    precision_reason: str
    compile: bool
    compile_reason: str


# --- detection ---------------------------------------------------------------------------------------------------


def flags_in_cpuinfo(text: str) -> frozenset[str]:
    """The REPORTED_CPU_FLAGS on the first `flags` line of /proc/cpuinfo's text (every core lists the same)."""
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    present = set(found.group(1).split()) if found else set()
    return frozenset(flag for flag in REPORTED_CPU_FLAGS if flag in present)


def detect_cpu_flags() -> frozenset[str]:
    """torch's own detection (CPUID through the cpuinfo library, `torch.cpu.get_capabilities`, in torch 2.13),
    or where that does not exist, the flags line of /proc/cpuinfo (Linux); none found elsewhere."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return frozenset(f for f in REPORTED_CPU_FLAGS if capabilities.get(TORCH_CAPABILITY_NAMES.get(f, f)))
    return flags_in_cpuinfo(CPUINFO.read_text()) if CPUINFO.exists() else frozenset()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform says."""
    if CPUINFO.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", CPUINFO.read_text(), re.MULTILINE)
        if found:
            return found.group(1).strip()
    return platform.processor() or platform.machine()


def find_cpp_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with: its own search (`$CXX`, else g++, each run with
    --version), or on a torch without that function the first of `$CXX`, g++, clang++ on PATH; None if none."""
    try:
        from torch._inductor import exc
        from torch._inductor.cpp_builder import get_cpp_compiler
    except (ImportError, AttributeError):
        candidates = [os.environ.get("CXX"), "g++", "clang++"]
        return next((found for name in candidates if name and (found := shutil.which(name))), None)
    try:
        return get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return None


def detect_hardware(device: torch.device) -> Hardware:
    """The `Hardware` of `device` in this process."""
    if device.type == "cuda":
        # Native only: with emulation counted, a pre-Ampere GPU would say yes and compute bf16 slowly.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Hardware("cuda", torch.cuda.get_device_name(device), cuda_bf16=native)
    if device.type != "cpu":
        return Hardware(device.type)
    flags = detect_cpu_flags()
    compiler = find_cpp_compiler() if native_bf16(Hardware("cpu", cpu_flags=flags)) else None
    return Hardware("cpu", cpu_name(), cpu_flags=flags, cpp_compiler=compiler)


# --- the choice --------------------------------------------------------------------------------------------------


def native_bf16(hardware: Hardware) -> str | None:
    """What computes bf16 natively on this hardware ("CUDA", "AMX-BF16", "AVX512-BF16"), or None.

    Arm CPUs with bf16 instructions are not counted: not measured here, and fp32 is the safe side."""
    if hardware.device_type == "cuda":
        return "CUDA" if hardware.cuda_bf16 else None
    if hardware.device_type == "cpu":
        return next((name for flag, name in NATIVE_BF16_CPU_FLAGS.items() if flag in hardware.cpu_flags), None)
    return None


def cpu_without_bf16(flags: frozenset[str]) -> str:
    """What a CPU without native bf16 has instead, as a reason's words."""
    if "avx512f" in flags:
        return "AVX-512 without BF16"
    if "avx2" in flags:
        return "AVX2 only"
    return "neither AMX-BF16 nor AVX512-BF16"


def choose_precision(setting: str, hardware: Hardware) -> tuple[str, str]:
    """(precision, reason) for `train.precision` = `setting` ("auto", "bf16" or "fp32") on `hardware`."""
    native = native_bf16(hardware)
    if setting != "auto":
        reason = f"precision {setting}: set by train.precision"
        if setting == "bf16" and hardware.device_type == "cpu" and native is None:
            reason += f" (the CPU has {cpu_without_bf16(hardware.cpu_flags)}: bf16 is emulated, slower than fp32)"
        return setting, reason
    if native == "CUDA":
        return "bf16", "precision bf16: the CUDA device computes bf16 natively"
    if native is not None:
        return "bf16", f"precision bf16: CPU has {native} (native bf16 matmuls)"
    if hardware.device_type == "cuda":
        return "fp32", "precision fp32: the CUDA device does not support bf16"
    if hardware.device_type == "cpu":
        without = cpu_without_bf16(hardware.cpu_flags)
        return "fp32", f"precision fp32: CPU has {without}, no native bf16 (emulated bf16 is slower than fp32)"
    return "fp32", f"precision fp32: no native bf16 known for device type {hardware.device_type!r}"


def choose_compile(
    train: TrainConfig, hardware: Hardware, precision: str, attention: str, sharded: bool
) -> tuple[bool, str]:
    """(compile, reason) for `train.compile` on `hardware`, given the chosen precision and the resolved
    attention implementation (`fcloop.model.load.attention_implementation`)."""
    if isinstance(train.compile, bool):
        return train.compile, f"compile {'on' if train.compile else 'off'}: set by train.compile"
    if sharded:
        return False, "compile off: FSDP (compiled layers under its hooks are not tried yet; train.compile = true)"
    if hardware.device_type == "cuda":
        return True, "compile on: CUDA (decoder layers and flex block masks compiled)"
    if hardware.device_type != "cpu":
        return False, f"compile off: device type {hardware.device_type!r}"
    native = native_bf16(hardware)
    if precision == "fp32":
        return False, "compile off: fp32 on CPU (inductor-compiled fp32 layers measured slower than eager)"
    if native is None:
        return False, "compile off: bf16 on a CPU without native bf16 (compiled emulated bf16 is not measured)"
    if attention != "eager":
        # Inductor builds flex attention for CPU inference only: lowering its backward fails (torch 2.13, tried on
        # the tiny model), so inductor-compiled CPU layers train with eager attention only. (aot_eager runs flex's
        # dense reference backward, the CPU tests' path, but generates no code: nothing to gain in speed.)
        return False, f"compile off: {attention} on CPU (inductor builds it for inference only)"
    if train.compile_backend != "inductor":
        return False, f"compile off: train.compile_backend = {train.compile_backend!r} (the CPU speed-up is inductor's)"
    if hardware.cpp_compiler is None:
        return False, "compile off: no C++ compiler for inductor's CPU code (install g++, or set CXX)"
    return True, f"compile on: bf16 on a CPU with {native}, layers compiled by inductor ({hardware.cpp_compiler})"


def plan_compute(train: TrainConfig, hardware: Hardware, attention: str, sharded: bool = False) -> ComputePlan:
    """The precision and compile a run uses on `hardware`, and why."""
    precision, precision_reason = choose_precision(train.precision, hardware)
    compiled, compile_reason = choose_compile(train, hardware, precision, attention, sharded)
    return ComputePlan(precision, precision_reason, compiled, compile_reason)


def record(hardware: Hardware, plan: ComputePlan) -> dict:
    """The plan and the hardware it was chosen for, as JSON values (run.json)."""
    return {
        "precision": plan.precision,
        "precision_reason": plan.precision_reason,
        "compile": plan.compile,
        "compile_reason": plan.compile_reason,
        "device_type": hardware.device_type,
        "device_name": hardware.device_name,
        "cuda_bf16": hardware.cuda_bf16,
        "cpu_flags": sorted(hardware.cpu_flags),
        "cpp_compiler": hardware.cpp_compiler,
    }
