"""Document masks for flex attention: the packed-row isolation of `document_attention_masks` as BlockMasks.

Eager attention takes dense additive [rows, 1, T, T] masks; flex attention takes a BlockMask built from a
mask function, which lets its kernel skip every 128x128 tile that is fully masked (across documents, above
the diagonal, outside the sliding window) instead of computing and discarding it. The rule is the same as
the eager one: a query sees keys of its own document at or before its position, sliding layers only the
last `sliding_window` positions, and a padding token sees only itself.

How transformers uses these (checked in 5.23, `models/gemma2/modeling_gemma2.py` and
`integrations/flex_attention.py`): a dict `{"full_attention": ..., "sliding_attention": ...}` given as
`attention_mask` is passed through to each layer by its `config.layer_types` entry, unchanged;
`flex_attention_forward` takes a BlockMask as `block_mask` and applies Gemma-2's attention logit softcap
itself, as a `score_mod` (`softcap * tanh(score / softcap)`), with the `query_pre_attn_scalar` scaling. So
the masks here carry only which keys are visible; the softcap must not be added again.

Gradients (tests/test_flex_gradients.py): compiled flex attention gives eager attention's loss and LoRA
gradients, with and without activation checkpointing. Flex's *unfused* implementation (what runs when it is
not compiled: dynamo disabled, or dynamo's silent fallback after an error or at the recompile limit) with a
`score_mod` such as Gemma-2's softcap under non-reentrant activation checkpointing gives wrong dq and dk
(torch 2.13 on CPU: errors from O(1) to 1e24, inf or NaN, varying run to run, like reads of uninitialized
memory; dv and the loss are right). Without the softcap, with reentrant checkpointing, without checkpointing,
or compiled (flex compiled alone or inside a compiled layer, first compiled inside or outside the
checkpointed region) it is exact.
`refuse_unfused_flex_under_checkpointing` keeps training off that path.
"""

from __future__ import annotations

import torch

from fcloop.model import document_attention_masks
from fcloop.packing import PADDING_DOCUMENT, Batch

FULL = "full_attention"
SLIDING = "sliding_attention"


def _document_mask_mod(document_ids: torch.Tensor, position_ids: torch.Tensor, window: int | None):
    """mask_mod(b, h, q, k) -> bool: same document, causal by position, optionally within the window.

    Positions (not indices) decide causality and the window, exactly as the eager masks do. The diagonal
    is always visible: a padding row would otherwise see nothing. (Flex would then output zeros rather
    than NaN, but the diagonal keeps padding outputs identical to the eager path's.)
    """

    def mask_mod(b, h, q_idx, kv_idx):
        q_doc = document_ids[b, q_idx]
        distance = position_ids[b, q_idx] - position_ids[b, kv_idx]
        visible = (q_doc == document_ids[b, kv_idx]) & (q_doc != PADDING_DOCUMENT) & (distance >= 0)
        if window is not None:
            visible = visible & (distance < window)
        return visible | (q_idx == kv_idx)

    return mask_mod


def document_block_masks(document_ids: torch.Tensor, position_ids: torch.Tensor, model_config) -> dict:
    """BlockMasks for flex attention on packed rows, one per layer type, keyed like the eager masks.

    document_ids, position_ids: [rows, tokens] as in `fcloop.packing.Batch` (-1 marks padding).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    rows, tokens = document_ids.shape
    # Compiling the mask builder avoids materializing a dense [rows, T, T] boolean mask; on CPU the plain
    # vmap path is used, as the masks there are small and inductor's C++ build would cost more.
    compile_builder = document_ids.device.type == "cuda"

    def block_mask(window: int | None):
        return create_block_mask(
            _document_mask_mod(document_ids, position_ids, window),
            B=rows,
            H=None,  # the same mask for every head
            Q_LEN=tokens,
            KV_LEN=tokens,
            device=document_ids.device,
            _compile=compile_builder,
        )

    masks = {FULL: block_mask(None)}
    window = getattr(model_config, "sliding_window", None)
    if window:
        masks[SLIDING] = block_mask(int(window))
    return masks


def refuse_unfused_flex_under_checkpointing(decoder: torch.nn.Module) -> None:
    """Raise if a flex-attention training pass under activation checkpointing could run flex unfused, where
    its softcap gradients are wrong (see the module docstring): that needs dynamo on, errors raised rather
    than run uncompiled, and the recompile limit an error rather than a fallback (train.compile sets it)."""
    if not torch.is_grad_enabled() or not any(
        getattr(layer, "gradient_checkpointing", False) for layer in decoder.layers
    ):
        return
    dynamo = torch._dynamo.config
    fallbacks = [
        reason
        for reason, present in (
            ("torch.compile is disabled (torch._dynamo.config.disable / TORCHDYNAMO_DISABLE)", dynamo.disable),
            (
                "compile errors fall back to uncompiled code (torch._dynamo.config.suppress_errors)",
                dynamo.suppress_errors,
            ),
            (
                "the recompile limit falls back to uncompiled code (torch._dynamo.config.fail_on_recompile_limit_hit "
                "is off; train.compile = true turns it on)",
                not dynamo.fail_on_recompile_limit_hit,
            ),
        )
        if present
    ]
    if fallbacks:
        raise RuntimeError(
            "flex attention with activation checkpointing could run flex's unfused implementation, whose softcap "
            "gradients are wrong under checkpointing: " + "; ".join(fallbacks) + ". Set train.compile = true, or "
            'train.activation_checkpointing = false, or model.attn_implementation = "eager".'
        )


def attention_masks_for(batch: Batch, model_config, attn_implementation: str, dtype: torch.dtype) -> dict:
    """The document-isolating masks in the form `attn_implementation` takes: dense additive masks for eager,
    BlockMasks for flex attention. `dtype` is the eager masks' dtype (the autocast compute dtype)."""
    if attn_implementation == "flex_attention":
        return document_block_masks(batch.document_ids, batch.position_ids, model_config)
    if attn_implementation == "eager":
        return document_attention_masks(batch.document_ids, batch.position_ids, model_config, dtype)
    # SDPA cannot softcap (Gemma-2 refuses it) and other kernels would not get a per-document mask here.
    raise ValueError(f"no document masks for attn_implementation {attn_implementation!r}; use eager or flex_attention")
