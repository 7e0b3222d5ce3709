"""FSDP2 (`train.data_parallel = "fsdp"`): the model's weights sharded across ranks, for models that do not
fit on one GPU.

Each decoder layer is its own `fully_shard` unit: its weights are gathered just before its forward and its
backward and freed after. A small root module holds the rest (embeddings, final norm, lm_head and their
adapters); training and eval forwards enter through it, so FSDP gathers those weights first and
reduce-scatters their gradients after backward. FSDP averages gradients across ranks; the training step
multiplies each rank's loss by the number of ranks so that the average is the sum the normalization needs
(each rank's loss is already divided by the whole step's supervised token count).

FSDP's collectives need every rank to run the same passes: a rank short of rows runs padding batches whose
loss counts zero, and generation runs the same cases on every rank. Checkpoints hold full tensors in the
same layout as the replicated mode's, so a run resumes in either mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from fcloop.model.load import model_parts


class ShardedRoot(nn.Module):
    """FSDP's root unit: the model plus the loss, so that a forward through it is a forward through the root."""

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch, precision: str, device: torch.device) -> tuple[torch.Tensor, int]:
        return self.loss_fn(self.model, batch, precision, device)


def fully_shard_model(model: nn.Module, loss_fn: Callable) -> ShardedRoot:
    """Shard every decoder layer, then the root; parameters become DTensors (re-select the trainable ones)."""
    from torch.distributed.fsdp import fully_shard

    for layer in model_parts(model).decoder.layers:
        fully_shard(layer)
    root = ShardedRoot(model, loss_fn)
    fully_shard(root)
    return root


def root_forward_loss(root: ShardedRoot, batch, precision: str, device: torch.device) -> tuple[torch.Tensor, int]:
    """The `loss_fn` of train_step and evaluate_loss in FSDP mode: enter through the root."""
    return root(batch, precision, device)


@contextlib.contextmanager
def root_gathered(root: ShardedRoot) -> Iterator[nn.Module]:
    """The inner model with the root's weights gathered, for calls that do not enter through the root
    (generation); every rank must make the same calls inside."""
    root.unshard()
    try:
        yield root.model
    finally:
        root.reshard()


def full_tensor(value: Any) -> Any:
    """A DTensor's whole value (a collective: every rank calls it, in the same order); anything else as is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter whole, named as in the (peft) model's own state dict."""
    return {name: full_tensor(p.detach()) for name, p in model.named_parameters() if p.requires_grad}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()` with every sharded state tensor made whole: the replicated mode's layout."""
    state_dict = optimizer.state_dict()
    state = {
        index: {key: full_tensor(value) for key, value in per_parameter.items()}
        for index, per_parameter in sorted(state_dict["state"].items())
    }
    return {"state": state, "param_groups": state_dict["param_groups"]}


def shard_optimizer_state(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The inverse for loading: each saved whole tensor split like the DTensor parameter it belongs to
    (tensors of whole parameters, and scalars such as Adam's step, stay as they are)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, per_parameter in saved["state"].items():
        parameter = parameters[int(index)]
        state[index] = {
            key: distribute_tensor(value.to(parameter.device), parameter.device_mesh, parameter.placements)
            if isinstance(parameter, DTensor) and value.shape == parameter.shape
            else value
            for key, value in per_parameter.items()
        }
    return {"state": state, "param_groups": saved["param_groups"]}
