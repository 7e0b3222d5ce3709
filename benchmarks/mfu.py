"""MFU: the FLOPs a LoRA training step needs (ANCHORS section 5), and the device's measured matmul peak."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fcloop.data.packing import PADDING_DOCUMENT, Batch
from fcloop.model.load import base_config
from fcloop.model.lora import LORA_PARAMETER_MARKERS

DATASHEET_PEAK_TFLOPS = 989.0  # dense bf16, H100 / H200 SXM (NVIDIA datasheet; 1979 is with sparsity)


@dataclass(frozen=True)
class MatmulCounts:
    """Parameters inside matmuls, counted from the built model (frozen base weights and LoRA apart)."""

    body: int  # q k v o gate up down of every decoder layer
    lm_head: int  # vocab x hidden
    lora_body: int  # LoRA A and B on the body's projections
    lora_lm_head: int  # LoRA A and B on lm_head
    layers: int
    attention_width: int  # heads x head_dim (2048 on gemma-2-2b, not the hidden size 2304)


def matmul_counts(model: nn.Module) -> MatmulCounts:
    body = lm_head = lora_body = lora_lm_head = 0
    for name, module in model.named_modules():
        # LoRA's own A/B are Linear modules too; they are counted below, as parameters that train.
        if isinstance(module, nn.Linear) and not any(marker in name for marker in LORA_PARAMETER_MARKERS):
            if "lm_head" in name:
                lm_head += module.weight.numel()
            else:
                body += module.weight.numel()
    for name, parameter in model.named_parameters():
        if any(marker in name for marker in LORA_PARAMETER_MARKERS):
            if "lm_head" in name:
                lora_lm_head += parameter.numel()
            else:
                lora_body += parameter.numel()
    config = base_config(model)
    return MatmulCounts(
        body, lm_head, lora_body, lora_lm_head, config.num_hidden_layers, config.num_attention_heads * config.head_dim
    )


def t_eff(document_lengths: Sequence[int]) -> float:
    """sum(n_i^2) / sum(n_i): the attention span a token pays for, on average, in document-masked rows."""
    return sum(n * n for n in document_lengths) / sum(document_lengths)


def flops_per_token(counts: MatmulCounts, t_eff_tokens: float, lm_head_fraction: float = 1.0) -> float:
    """ANCHORS section 5: F = 4*N_mm + 6*N_lora + 6*L*(H*d_head)*T_eff, with the lm_head (and its LoRA)
    counted on `lm_head_fraction` of the tokens (1.0 = every position, as ANCHORS' 11.2 GFLOP at T=2048).

    4*N: forward and input gradient of the frozen weights (no weight gradient); 6*N_lora: LoRA trains;
    attention: QK^T and PV, causal, forward 2 + backward 4. Recomputation (activation checkpointing, the
    chunked loss) is not counted: it is not work the step needs. The sliding window is ignored (it only
    matters for documents longer than 4096 tokens).
    """
    head = 4 * counts.lm_head + 6 * counts.lora_lm_head
    attention = 6 * counts.layers * counts.attention_width * t_eff_tokens
    return 4 * counts.body + 6 * counts.lora_body + head * lm_head_fraction + attention


def step_flops(counts: MatmulCounts, tokens: int, lm_head_tokens: int, sum_squared_lengths: int) -> float:
    """FLOPs the step needs: flops_per_token summed over the step's tokens, with the lm_head only where
    logits are needed (the supervised positions for fcloop, every position for the recipe)."""
    if tokens == 0:
        return 0.0
    return tokens * flops_per_token(counts, sum_squared_lengths / tokens, lm_head_tokens / tokens)


def document_lengths(batch: Batch) -> list[int]:
    """Lengths of the documents of a packed batch (padding excluded)."""
    lengths = []
    for row in batch.document_ids:
        real = row[row != PADDING_DOCUMENT]
        lengths += [int(n) for n in torch.bincount(real) if n > 0]
    return lengths


@dataclass(frozen=True)
class MatmulPeak:
    """The device's own dense matmul rate: `repetitions` timed [size x size] @ [size x size] products."""

    size: int
    dtype: str
    tflops: list[float]  # one per repetition

    @property
    def best_tflops(self) -> float:
        return max(self.tflops)

    def as_json(self) -> dict:
        return {"size": self.size, "dtype": self.dtype, "tflops": self.tflops, "best_tflops": self.best_tflops}


def measure_matmul_peak(device: torch.device, size: int, dtype: torch.dtype, repetitions: int = 5) -> MatmulPeak:
    """Time `repetitions` products of two random [size x size] matrices after one untimed warm-up product,
    synchronizing around each: 2*size^3 FLOPs each. 8192^3 in bf16 takes about 1.1 ms on an H100."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    rates = []
    for index in range(repetitions + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index > 0:  # the first product loads the kernel and sets up the math library
            rates.append(2 * size**3 / (time.perf_counter() - started) / 1e12)
    return MatmulPeak(size, str(dtype).removeprefix("torch."), rates)
