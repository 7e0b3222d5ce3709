"""Attention masks of packed rows: each document attends only to itself (block-causal, sliding where the layer is)."""

from __future__ import annotations

import torch

from fcloop.data.packing import PADDING_DOCUMENT


def document_attention_masks(
    document_ids: torch.Tensor, position_ids: torch.Tensor, model_config, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Additive 4D masks [rows, 1, tokens, tokens], one per layer type, for eager attention on packed rows.

    A query sees keys of its own document at or before it; sliding layers also only the last
    `sliding_window` positions. Padding sees only itself, so no softmax row is empty (which would be NaN).
    """
    same_document = document_ids[:, :, None] == document_ids[:, None, :]
    not_padding = document_ids[:, :, None] != PADDING_DOCUMENT
    distance = position_ids[:, :, None] - position_ids[:, None, :]  # query position - key position
    tokens = document_ids.shape[1]
    diagonal = torch.eye(tokens, dtype=torch.bool, device=document_ids.device)[None]
    full = (same_document & not_padding & (distance >= 0)) | diagonal
    masks = {"full_attention": full}
    window = getattr(model_config, "sliding_window", None)
    if window:
        masks["sliding_attention"] = full & (distance < window) | diagonal
    blocked = torch.finfo(dtype).min
    return {
        kind: torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, blocked)[:, None]
        for kind, allowed in masks.items()
    }
