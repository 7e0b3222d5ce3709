"""Encoded conversations -> rows -> batches.

Rows are planned over whole documents (best-fit-decreasing when packing, one per row otherwise), ordered by
the seed, and collated into tensors that carry the document boundaries for the attention mask. Targets are
shifted inside each document, so the last token of one document never predicts the first of the next.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from fcloop.data.tokenization import IGNORE_INDEX, Encoded

PADDING_DOCUMENT = -1
Value = TypeVar("Value")


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins of at most `capacity` total length.

    Longest first; each item goes to the fullest bin it still fits in. Within a bin, items keep the order in
    which they were placed. Ties in length are broken by index, so the result is deterministic.
    """
    if any(length > capacity for length in lengths):
        raise ValueError(f"an item is longer than the bin capacity {capacity}")
    bins: list[list[int]] = []
    # Sorted (remaining space, bin id): bisect finds the tightest bin that fits in O(log n).
    free: list[tuple[int, int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([index])
            remaining, bin_id = capacity - length, len(bins) - 1
        else:
            remaining, bin_id = free.pop(slot)
            bins[bin_id].append(index)
            remaining -= length
        bisect.insort(free, (remaining, bin_id))
    return bins


def plan_rows(lengths: Sequence[int], capacity: int, packing: bool, seed: int, epoch: int) -> list[list[int]]:
    """The rows of one epoch, each a list of document indices, in the seed's order for that epoch.

    The plan depends only on the data, capacity, packing, seed and epoch: never on micro-batch size or
    accumulation, so an optimizer step sees the same documents however it is split.
    """
    rows = best_fit_decreasing(lengths, capacity) if packing else [[i] for i in range(len(lengths))]
    random.Random(f"{seed}:{epoch}").shuffle(rows)
    return rows


def packing_efficiency(rows: Sequence[Sequence[int]], lengths: Sequence[int], capacity: int) -> float:
    """Fraction of row slots (rows x capacity) holding real tokens."""
    if not rows:
        return 0.0
    return sum(lengths[i] for row in rows for i in row) / (len(rows) * capacity)


@dataclass
class Batch:
    """A micro-batch. All tensors are [rows, tokens]."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    """Restart at 0 for every document."""
    target_ids: torch.Tensor
    """The token each position must predict (already shifted within its document), or -100."""
    document_ids: torch.Tensor
    """0, 1, ... per document within a row; -1 on padding."""
    target_weights: torch.Tensor | None = None
    """Each target's weight in the loss (shifted like target_ids; 1 where a document has no weights), or None
    when no document of the batch has any (data.emphasis_pattern unset): every target counts once."""

    @property
    def tokens(self) -> int:
        return int((self.document_ids != PADDING_DOCUMENT).sum())

    @property
    def supervised_tokens(self) -> int:
        return int((self.target_ids != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(None if tensor is None else tensor.to(device, non_blocking=True) for tensor in vars(self).values())
        )


def supervised_targets(doc: Encoded) -> int:
    """How many positions of this document have a target once shifted (its first token is never one)."""
    return sum(label != IGNORE_INDEX for label in doc.labels[1:])


def shifted(values: Sequence[Value], last: Value) -> list[Value]:
    """Each position gets the next token's value: what position i predicts is token i + 1. The document's last
    position predicts nothing and gets `last`."""
    return [*values[1:], last]


def shifted_targets(labels: Sequence[int]) -> list[int]:
    """targets[i] = labels[i + 1]; the document's last position predicts nothing (IGNORE_INDEX)."""
    return shifted(labels, IGNORE_INDEX)


def collate(rows: Sequence[Sequence[Encoded]], pad_token_id: int, pad_to: int | None = None) -> Batch:
    """Rows of documents -> Batch, padded on the right to the longest row (or to `pad_to`)."""
    width = max(sum(len(doc) for doc in row) for row in rows)
    if pad_to is not None:
        if pad_to < width:
            raise ValueError(f"a row of {width} tokens does not fit pad_to={pad_to}")
        width = pad_to
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    target_ids = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    document_ids = torch.full(shape, PADDING_DOCUMENT, dtype=torch.long)
    weighted = any(doc.weights is not None for row in rows for doc in row)
    target_weights = torch.ones(shape, dtype=torch.float32) if weighted else None
    for row_index, row in enumerate(rows):
        offset = 0
        for document_index, doc in enumerate(row):
            end = offset + len(doc)
            input_ids[row_index, offset:end] = torch.tensor(doc.input_ids)
            position_ids[row_index, offset:end] = torch.arange(len(doc))
            target_ids[row_index, offset:end] = torch.tensor(shifted_targets(doc.labels))
            document_ids[row_index, offset:end] = document_index
            if target_weights is not None and doc.weights is not None:
                target_weights[row_index, offset:end] = torch.tensor(shifted(doc.weights, 1.0))
            offset = end
    return Batch(input_ids, position_ids, target_ids, document_ids, target_weights)
