"""Trained token rows without the full matrix: peft's trainable-token layer, computed sparsely.

peft's `TrainableTokensLayer` holds the few trained rows of an embedding (and, with tied weights, of the
lm_head) as `trainable_tokens_delta`, but its forward rebuilds the whole [vocab x hidden] weight with those
rows written in (`index_copy`) on every call: on every embedding forward and on every lm_head loss chunk. That
copy requires grad, so backward also computes a full [vocab x hidden] weight gradient (a matmul as large as
the lm_head's) and a dense embedding gradient, only to keep k rows of each. For Gemma-2 (256k x 2304) that is
1.2 GB copied per call and about 1.2 TFLOP per 1024-token chunk.

`SparseTokenRowsLayer` computes the same function from the frozen weight and the k rows alone:
- embedding: the frozen lookup, then the trained tokens' positions replaced by their rows (a gather of k rows
  and a `where`);
- linear (the tied lm_head): the frozen logits, then the trained tokens' columns replaced by `h @ rows.T`.
Backward then touches only [k x hidden] for the rows. The parameters, their names and the saved adapter are
peft's own (the layer is a subclass, switched in place), so `PeftModel.from_pretrained`, merging, resuming
and FSDP see exactly what they saw before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from torch import nn


class SparseTokenRowsLayer(TrainableTokensLayer):
    """peft's trainable-token layer with a forward that never builds the full weight (same values: in fp32
    the logits and embeddings equal peft's up to matmul rounding, tested)."""

    def _row_indices(self, adapter: str, device: torch.device) -> torch.Tensor:
        # Cached per device: a host-to-device copy on every call would stall a CUDA stream.
        cache = self.__dict__.setdefault("_row_index_cache", {})
        key = (adapter, device)
        if key not in cache:
            cache[key] = torch.tensor(self.token_indices[adapter], dtype=torch.long, device=device)
        return cache[key]

    def forward_adapters(self, x: torch.Tensor, active_adapters, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters or not active_adapters or self.merged:
            return super().forward_adapters(x, active_adapters, *args, **kwargs)
        self._check_overlapping_tokens(active_adapters)
        base = self.base_layer
        result = base(x, *args, **kwargs)
        for adapter in active_adapters:
            indices = self._row_indices(adapter, x.device)
            # As peft does: the rows in the frozen weight's dtype (bf16 under bf16 training).
            rows = self.trainable_tokens_delta[adapter].to(base.weight.dtype)
            if isinstance(base, nn.Embedding):
                result = self._embedding_with_rows(x, result, indices, rows, adapter)
            elif isinstance(base, nn.Linear):
                result = _logits_with_rows(x, result, indices, rows)
            else:
                raise ValueError(f"trainable token rows on a {type(base).__name__}: only embeddings and linear layers")
        return result

    def _embedding_with_rows(
        self, token_ids: torch.Tensor, embedded: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor, adapter: str
    ) -> torch.Tensor:
        """embedded [..., hidden] with each trained token's vector taken from `rows` [k, hidden]."""
        matches = token_ids.unsqueeze(-1) == indices  # [..., k]
        slot = matches.long().argmax(dim=-1)  # which row, where a token is trained (else 0, unused)
        # The padding token's row gets no gradient in an embedding with padding_idx; keep that if it is trained.
        padding = self.base_layer.padding_idx
        padding_slot = self.token_indices[adapter].index(padding) if padding in self.token_indices[adapter] else None
        trained_vectors = F.embedding(slot, rows, padding_idx=padding_slot)  # [..., hidden]
        scale = self._get_embed_scale()  # Gemma's embeddings scale by sqrt(hidden) in their forward
        if scale is not None:
            trained_vectors = trained_vectors * scale.to(trained_vectors.dtype)
        return torch.where(matches.any(dim=-1, keepdim=True), trained_vectors.to(embedded.dtype), embedded)


def _logits_with_rows(
    hidden: torch.Tensor, logits: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """logits [..., vocab] of the frozen weight, with the trained tokens' columns replaced by hidden @ rows.T."""
    trained_logits = F.linear(hidden, rows)  # [..., k]
    # In place on the frozen matmul's output (its backward needs only the weight and the input), so no second
    # [tokens x vocab] tensor is made; the replaced columns pass no gradient to the frozen weight's product.
    return logits.index_copy_(-1, indices, trained_logits.to(logits.dtype))


def use_sparse_token_rows(model: nn.Module) -> int:
    """Switch every peft trainable-token layer of `model` to `SparseTokenRowsLayer` in place (same parameters,
    same state dict); returns how many were switched."""
    switched = 0
    for module in model.modules():
        if type(module) is TrainableTokensLayer:
            base = module.base_layer
            if isinstance(base, nn.Embedding) and (base.max_norm is not None or base.scale_grad_by_freq or base.sparse):
                raise NotImplementedError(
                    "trainable token rows on an embedding with max_norm, scale_grad_by_freq or sparse gradients"
                )
            module.__class__ = SparseTokenRowsLayer
            switched += 1
    return switched
