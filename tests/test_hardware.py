"""Precision and compile chosen by the hardware (fcloop.hardware): the whole table, and the detection."""

from __future__ import annotations

import pytest
import torch

import fcloop.hardware as hardware_module
from fcloop.config import load_config
from fcloop.hardware import (
    ComputePlan,
    Hardware,
    detect_hardware,
    find_cpp_compiler,
    flags_in_cpuinfo,
    plan_compute,
    record,
)

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX512 = frozenset({"avx2", "avx512f"})
AVX2 = frozenset({"avx2"})

CUDA_BF16 = Hardware("cuda", "NVIDIA H200", cuda_bf16=True)
CUDA_NO_BF16 = Hardware("cuda", "Tesla V100", cuda_bf16=False)
AMX_CPU = Hardware("cpu", "Intel Xeon Platinum 8480+", cpu_flags=AMX, cpp_compiler="g++")
AVX512_BF16_CPU = Hardware("cpu", "AMD EPYC 9654", cpu_flags=AVX512_BF16, cpp_compiler="g++")
AVX512_CPU = Hardware("cpu", "Intel Xeon Gold 6148", cpu_flags=AVX512)
AVX2_CPU = Hardware("cpu", "AMD EPYC", cpu_flags=AVX2)
AMX_CPU_NO_CXX = Hardware("cpu", "Intel Xeon Platinum 8480+", cpu_flags=AMX, cpp_compiler=None)

BF16_CUDA = "precision bf16: the CUDA device computes bf16 natively"
FP32_CUDA = "precision fp32: the CUDA device does not support bf16"
BF16_AMX = "precision bf16: CPU has AMX-BF16 (native bf16 matmuls)"
BF16_AVX512 = "precision bf16: CPU has AVX512-BF16 (native bf16 matmuls)"
EMULATED = "no native bf16 (emulated bf16 is slower than fp32)"
FP32_AVX2 = f"precision fp32: CPU has AVX2 only, {EMULATED}"
FP32_AVX512 = f"precision fp32: CPU has AVX-512 without BF16, {EMULATED}"
FP32_OTHER_CPU = f"precision fp32: CPU has neither AMX-BF16 nor AVX512-BF16, {EMULATED}"
FP32_SET = "precision fp32: set by train.precision"
BF16_SET = "precision bf16: set by train.precision"
BF16_SET_AVX2 = "precision bf16: set by train.precision (the CPU has AVX2 only: bf16 is emulated, slower than fp32)"
ON_CUDA = "compile on: CUDA (decoder layers and flex block masks compiled)"
ON_AMX = "compile on: bf16 on a CPU with AMX-BF16, layers compiled by inductor (g++)"
ON_AVX512 = "compile on: bf16 on a CPU with AVX512-BF16, layers compiled by inductor (g++)"
ON_SET = "compile on: set by train.compile"
OFF_SET = "compile off: set by train.compile"
OFF_FP32 = "compile off: fp32 on CPU (inductor-compiled fp32 layers measured slower than eager)"
OFF_EMULATED = "compile off: bf16 on a CPU without native bf16 (compiled emulated bf16 is not measured)"
OFF_NO_CXX = "compile off: no C++ compiler for inductor's CPU code (install g++, or set CXX)"
OFF_FLEX = "compile off: flex_attention on CPU (inductor builds it for inference only)"
OFF_AOT_EAGER = "compile off: train.compile_backend = 'aot_eager' (the CPU speed-up is inductor's)"
OFF_FSDP = "compile off: FSDP (compiled layers under its hooks are not tried yet; train.compile = true)"
FLEX, EAGER = "flex_attention", "eager"
BF16, FP32 = ("--train.precision=bf16",), ("--train.precision=fp32",)


def plan(hardware: Hardware, *overrides: str, attention: str = EAGER, sharded: bool = False) -> ComputePlan:
    return plan_compute(load_config(None, list(overrides)).train, hardware, attention, sharded)


@pytest.mark.parametrize(
    ("hardware", "overrides", "attention", "sharded", "expected"),
    [
        # precision and compile "auto" (the defaults)
        (CUDA_BF16, (), FLEX, False, ("bf16", BF16_CUDA, True, ON_CUDA)),
        (CUDA_NO_BF16, (), FLEX, False, ("fp32", FP32_CUDA, True, ON_CUDA)),
        (CUDA_BF16, (), FLEX, True, ("bf16", BF16_CUDA, False, OFF_FSDP)),
        (AMX_CPU, (), EAGER, False, ("bf16", BF16_AMX, True, ON_AMX)),
        (AVX512_BF16_CPU, (), EAGER, False, ("bf16", BF16_AVX512, True, ON_AVX512)),
        (AVX2_CPU, (), EAGER, False, ("fp32", FP32_AVX2, False, OFF_FP32)),
        (AVX512_CPU, (), EAGER, False, ("fp32", FP32_AVX512, False, OFF_FP32)),
        (Hardware("cpu", "Neoverse-V1"), (), EAGER, False, ("fp32", FP32_OTHER_CPU, False, OFF_FP32)),
        # a native-bf16 CPU compiles only where the measured speed-up applies
        (AMX_CPU_NO_CXX, (), EAGER, False, ("bf16", BF16_AMX, False, OFF_NO_CXX)),
        (AMX_CPU, (), FLEX, False, ("bf16", BF16_AMX, False, OFF_FLEX)),
        (AMX_CPU, ("--train.compile_backend=aot_eager",), EAGER, False, ("bf16", BF16_AMX, False, OFF_AOT_EAGER)),
        (AMX_CPU, (), EAGER, True, ("bf16", BF16_AMX, False, OFF_FSDP)),
        # explicit settings win, whatever the hardware
        (AMX_CPU, FP32, EAGER, False, ("fp32", FP32_SET, False, OFF_FP32)),
        (AMX_CPU, BF16, EAGER, False, ("bf16", BF16_SET, True, ON_AMX)),
        (CUDA_BF16, FP32, FLEX, False, ("fp32", FP32_SET, True, ON_CUDA)),
        (CUDA_NO_BF16, BF16, FLEX, False, ("bf16", BF16_SET, True, ON_CUDA)),
        (AVX2_CPU, BF16, EAGER, False, ("bf16", BF16_SET_AVX2, False, OFF_EMULATED)),
        (AVX2_CPU, ("--train.compile=true",), EAGER, False, ("fp32", FP32_AVX2, True, ON_SET)),
        (CUDA_BF16, ("--train.compile=false",), FLEX, False, ("bf16", BF16_CUDA, False, OFF_SET)),
        (CUDA_BF16, ("--train.compile=true",), FLEX, True, ("bf16", BF16_CUDA, True, ON_SET)),
        # a device type the table does not know
        (
            Hardware("mps"),
            (),
            EAGER,
            False,
            (
                "fp32",
                "precision fp32: no native bf16 known for device type 'mps'",
                False,
                "compile off: device type 'mps'",
            ),
        ),
    ],
)
def test_the_choice_and_its_reasons(hardware, overrides, attention, sharded, expected):
    chosen = plan(hardware, *overrides, attention=attention, sharded=sharded)
    assert (chosen.precision, chosen.precision_reason, chosen.compile, chosen.compile_reason) == expected


# --- detection ---------------------------------------------------------------------------------------------------

CPU = torch.device("cpu")


def capabilities(*present: str):
    """A stand-in for torch.cpu.get_capabilities() (torch's names: avx512_f, not avx512f)."""
    names = ("avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
    return lambda: {name: name in present for name in names} | {"cpu_name": "from torch", "num_logical_cores": 2}


def not_called():
    raise AssertionError("looked for a C++ compiler on a CPU that cannot compile under auto")


def test_a_cpu_is_detected_through_torch(monkeypatch):
    monkeypatch.setattr(
        torch.cpu, "get_capabilities", capabilities("avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_tile")
    )
    monkeypatch.setattr(hardware_module, "cpu_name", lambda: "Intel Xeon Platinum 8480+")
    monkeypatch.setattr(hardware_module, "find_cpp_compiler", lambda: "g++")
    assert detect_hardware(CPU) == AMX_CPU
    monkeypatch.setattr(torch.cpu, "get_capabilities", capabilities("avx2", "avx512_f", "avx512_bf16"))
    monkeypatch.setattr(hardware_module, "cpu_name", lambda: "AMD EPYC 9654")
    assert detect_hardware(CPU) == AVX512_BF16_CPU
    monkeypatch.setattr(hardware_module, "find_cpp_compiler", lambda: None)
    monkeypatch.setattr(
        torch.cpu, "get_capabilities", capabilities("avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_tile")
    )
    monkeypatch.setattr(hardware_module, "cpu_name", lambda: "Intel Xeon Platinum 8480+")
    assert detect_hardware(CPU) == AMX_CPU_NO_CXX


def test_a_cpu_without_native_bf16_does_not_look_for_a_compiler(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", capabilities("avx2", "avx512_vnni"))
    monkeypatch.setattr(hardware_module, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(hardware_module, "find_cpp_compiler", not_called)
    assert detect_hardware(CPU) == AVX2_CPU


def test_without_torchs_detection_the_flags_come_from_proc_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n"
        "flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    monkeypatch.setattr(hardware_module, "CPUINFO", cpuinfo)
    monkeypatch.setattr(hardware_module, "find_cpp_compiler", not_called)
    assert detect_hardware(CPU) == Hardware("cpu", "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", cpu_flags=AVX512)


def test_cpuinfo_flags_are_whole_words_of_the_flags_line():
    text = "flags\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    assert flags_in_cpuinfo(text) == AMX
    assert flags_in_cpuinfo("flags\t: avx2x avx512_bf16_extra sse\n") == frozenset()
    assert flags_in_cpuinfo("Features\t: fp asimd bf16\n") == frozenset()  # an Arm CPU: no flags line


def test_a_cuda_gpu_counts_only_native_bf16(monkeypatch):
    asked = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return True

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert detect_hardware(torch.device("cuda")) == CUDA_BF16
    assert asked == [False]


def test_no_cpp_compiler_is_none(monkeypatch):
    from torch._inductor import cpp_builder, exc

    def missing() -> str:
        raise exc.InvalidCxxCompiler

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    assert find_cpp_compiler() is None
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", lambda: "clang++")
    assert find_cpp_compiler() == "clang++"


def test_the_record_holds_the_plan_and_the_hardware():
    assert record(AMX_CPU, plan(AMX_CPU)) == {
        "precision": "bf16",
        "precision_reason": BF16_AMX,
        "compile": True,
        "compile_reason": ON_AMX,
        "device_type": "cpu",
        "device_name": "Intel Xeon Platinum 8480+",
        "cuda_bf16": False,
        "cpu_flags": ["amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512f"],
        "cpp_compiler": "g++",
    }
