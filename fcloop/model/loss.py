"""Memory-lean cross-entropy: logits only at supervised positions, in chunks, by default recomputed in backward.

The full [tokens x vocab] logits are never materialized: hidden states are gathered at the positions that
have a target, and, with `recompute` (the default), each chunk's logits live only inside a checkpointed
function whose backward recomputes them. Without it the chunks' logits stay for backward: at least 4 bytes
per supervised token per vocabulary entry more memory, one lm_head matmul per chunk less. The chunk goes
through the real lm_head module, so a LoRA on lm_head is trained, and Gemma-2's final logit softcap is
applied before the softmax, as the model's own forward does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from fcloop.data.tokenization import IGNORE_INDEX

DEFAULT_CHUNK_SIZE = 1024


def softcap_logits(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    if softcap is None:
        return logits
    return torch.tanh(logits / softcap) * softcap


def _chunk_loss_sum(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    lm_head: nn.Module,
    softcap: float | None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    # [chunk, hidden] -> [chunk, vocab]; fp32 for the softmax, as the logits of bf16 matmuls are coarse.
    logits = softcap_logits(lm_head(hidden).float(), softcap)
    if weights is None:
        return F.cross_entropy(logits, targets, reduction="sum")
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()


def supervised_cross_entropy(
    hidden: torch.Tensor,
    target_ids: torch.Tensor,
    lm_head: nn.Module,
    softcap: float | None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    recompute: bool = True,
    target_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """(sum of token NLL over supervised positions as an fp32 scalar, each times its weight in
    `target_weights` when given, and the number of supervised positions).

    hidden: [rows, tokens, hidden] final-normed decoder output; target_ids and target_weights: [rows, tokens],
    already shifted.
    """
    supervised = target_ids != IGNORE_INDEX
    selected_hidden = hidden[supervised]  # [supervised, hidden]
    selected_targets = target_ids[supervised]  # [supervised]
    selected_weights = None if target_weights is None else target_weights[supervised]
    count = int(selected_targets.numel())
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, count, chunk_size):
        chunk_hidden = selected_hidden[start : start + chunk_size]
        chunk_targets = selected_targets[start : start + chunk_size]
        chunk_weights = None if selected_weights is None else selected_weights[start : start + chunk_size]
        if recompute and torch.is_grad_enabled():
            total = total + checkpoint(
                _chunk_loss_sum, chunk_hidden, chunk_targets, lm_head, softcap, chunk_weights, use_reentrant=False
            )
        else:
            total = total + _chunk_loss_sum(chunk_hidden, chunk_targets, lm_head, softcap, chunk_weights)
    return total, count
