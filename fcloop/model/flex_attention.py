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

Gradients (tests/model/test_flex_gradients.py): compiled flex attention gives eager attention's loss and LoRA
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

import functools

import torch

from fcloop.data.packing import PADDING_DOCUMENT, Batch
from fcloop.model.attention_masks import document_attention_masks

FULL = "full_attention"
SLIDING = "sliding_attention"


def _document_mask_mod(document_ids: torch.Tensor, position_ids: torch.Tensor, window: torch.Tensor):
    """mask_mod(b, h, q, k) -> bool: same document, causal by position, and within `window` positions.

    Positions (not indices) decide causality and the window, exactly as the eager masks do. Full-attention
    layers get a window of the row's length, which every in-row distance is below: one mask function (and
    one compiled graph) for both layer types, where an optional window would make two. `window` is a 0-d
    tensor, not an int, for the same reason: a compiled builder specializes on ints. The diagonal is always
    visible: a padding row would otherwise see nothing. (Flex would then output zeros rather than NaN, but
    the diagonal keeps padding outputs identical to the eager path's.)
    """

    def mask_mod(b, h, q_idx, kv_idx):
        q_doc = document_ids[b, q_idx]
        distance = position_ids[b, q_idx] - position_ids[b, kv_idx]
        visible = (q_doc == document_ids[b, kv_idx]) & (q_doc != PADDING_DOCUMENT) & (distance >= 0)
        return visible & (distance < window) | (q_idx == kv_idx)

    return mask_mod


def _block_mask(document_ids: torch.Tensor, position_ids: torch.Tensor, window: torch.Tensor, compile_inner: bool):
    from torch.nn.attention.flex_attention import create_block_mask

    rows, tokens = document_ids.shape
    return create_block_mask(
        _document_mask_mod(document_ids, position_ids, window),
        B=rows,
        H=None,  # the same mask for every head
        Q_LEN=tokens,
        KV_LEN=tokens,
        device=document_ids.device,
        _compile=compile_inner,
    )


@functools.cache
def compiled_block_mask_builder(backend: str):
    """`_block_mask` compiled once per backend, with fixed shapes: the loop's compiled path. One function
    object for the whole run, so its graphs (one per batch shape: training and evaluation) are all the
    compiling it does, instead of a fresh closure compiled per call."""
    return torch.compile(_block_mask, backend=backend, fullgraph=True, dynamic=False)


def document_block_masks(
    document_ids: torch.Tensor, position_ids: torch.Tensor, model_config, compile_backend: str | None = None
) -> dict:
    """BlockMasks for flex attention on packed rows, one per layer type, keyed like the eager masks.

    document_ids, position_ids: [rows, tokens] as in `fcloop.data.packing.Batch` (-1 marks padding).
    `compile_backend` builds them with `compiled_block_mask_builder` (train.compile); without it, CUDA
    compiles create_block_mask's inner function itself (no dense [rows, T, T] boolean mask) and CPU takes the
    plain vmap path, as the masks there are small and inductor's C++ build would cost more.
    """
    tokens = document_ids.shape[1]
    if compile_backend is None:
        build = functools.partial(_block_mask, compile_inner=document_ids.device.type == "cuda")
    else:
        build = functools.partial(compiled_block_mask_builder(compile_backend), compile_inner=False)

    def window_tensor(window: int) -> torch.Tensor:
        return torch.tensor(window, dtype=position_ids.dtype, device=position_ids.device)

    masks = {FULL: build(document_ids, position_ids, window_tensor(tokens))}
    window = getattr(model_config, "sliding_window", None)
    if window:
        masks[SLIDING] = build(document_ids, position_ids, window_tensor(int(window)))
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


def attention_masks_for(
    batch: Batch, model_config, attn_implementation: str, dtype: torch.dtype, compile_backend: str | None = None
) -> dict:
    """The document-isolating masks in the form `attn_implementation` takes: dense additive masks for eager,
    BlockMasks for flex attention (built by a compiled function with `compile_backend`). `dtype` is the
    eager masks' dtype (the autocast compute dtype)."""
    if attn_implementation == "flex_attention":
        return document_block_masks(batch.document_ids, batch.position_ids, model_config, compile_backend)
    if attn_implementation == "eager":
        return document_attention_masks(batch.document_ids, batch.position_ids, model_config, dtype)
    # SDPA cannot softcap (Gemma-2 refuses it) and other kernels would not get a per-document mask here.
    raise ValueError(f"no document masks for attn_implementation {attn_implementation!r}; use eager or flex_attention")
