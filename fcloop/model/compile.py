"""torch.compile in the loop: which parts compile, the recompile limit, and counting what was compiled.

Each decoder layer is compiled on its own (not the whole model: the loss, the masks' Python glue and the
optimizer stay eager, and LoRA dropout under activation checkpointing breaks whole-model capture, peft#3020).
All layers run the same Python code, so dynamo keeps one cache of graphs for them, guarded per layer
*type* (Gemma-2: sliding and full, when their code paths differ) and per mode (training with grad, evaluation
without; see GRAPHS_PER_LAYER_TYPE). Shapes are fixed by the loop (rows padded to data.max_seq_len, batches to
a fixed number of rows), so nothing else varies; any further graph is a recompilation, and past the limit
set here it is an error instead of dynamo's silent fallback to running the code uncompiled. Whether a run
compiles (`train.compile = "auto"`) is decided with its precision, by the hardware: fcloop.hardware.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

# Graphs of a decoder layer type a run needs: one for training, and two for evaluation. Under activation
# checkpointing peft makes the embedding output require grad (a forward hook that acts under no_grad too), so in
# evaluation the first layer's input requires grad and the others' does not: two guards, two graphs.
GRAPHS_PER_LAYER_TYPE = 3

# Inductor's options for layers compiled on a CPU: its code with 256-bit (AVX2) vectors. Its 512-bit code, the
# default on a CPU with AVX-512, computes NaN gradients through a Gemma-3 attention block in bf16 (torch 2.13 on
# an Intel Xeon with AMX-BF16, 2026-12-05: every LoRA gradient of the demo NaN at its first step, with a finite
# loss; torch's compiler bisector points at the fused backward of the key norm's `1 + weight`). The 256-bit code
# gives eager's gradients there; tests/model/test_compile.py compares them on the CPU it runs on.
CPU_INDUCTOR_OPTIONS = {"cpp.simdlen": 256}


def layer_types(decoder: nn.Module) -> list[str]:
    """The distinct attention types of the decoder's layers, e.g. ["sliding_attention", "full_attention"]."""
    types = getattr(decoder.config, "layer_types", None) or ["full_attention"]
    return sorted(set(types))


def set_recompile_limit(graphs_needed: int) -> None:
    """Let each compiled function hold `graphs_needed` graphs, and make one more an error, not a fallback.

    Both settings exist under these names in torch 2.11 and 2.13 (`cache_size_limit` is the older alias).
    """
    torch._dynamo.config.recompile_limit = max(graphs_needed, 1)
    torch._dynamo.config.fail_on_recompile_limit_hit = True


def compile_for_training(decoder: nn.Module, backend: str) -> None:
    """A fresh compile of `decoder`'s layers for one run, allowed exactly the graphs it needs."""
    torch._dynamo.reset()  # graphs of an earlier run in this process must not count against this run's limit
    # The mask builder needs fewer: one for training and one for evaluation.
    set_recompile_limit(len(layer_types(decoder)) * GRAPHS_PER_LAYER_TYPE)
    compile_decoder_layers(decoder, backend)


def compile_decoder_layers(decoder: nn.Module, backend: str) -> None:
    """Compile every decoder layer in place with fixed shapes (`dynamic=False`: a new shape is a new graph,
    which the fixed-shape batches never produce, rather than a slower shape-generic one)."""
    permit_compiled_cpu_flex_backward()
    on_cpu = next(decoder.parameters()).device.type == "cpu"
    options = CPU_INDUCTOR_OPTIONS if backend == "inductor" and on_cpu else None
    for layer in decoder.layers:
        layer.compile(backend=backend, dynamic=False, options=options)


def permit_compiled_cpu_flex_backward() -> None:
    """Let flex attention take gradients on CPU while it is being compiled, and only then.

    `flex_attention` refuses CPU inputs that require grad (its `_validate_device`), and dynamo traces that
    check too, so a compiled layer could not train on CPU at all. Yet the operator dynamo captures has a CPU
    backward: its dense reference implementation, which a backend without code generation (`aot_eager`)
    runs as is; that is how the CPU tests run the compiled loop. Uncompiled calls keep the refusal.
    The check is a module-level function that flex_attention looks up at each call, so replacing it is
    enough; doing it twice is harmless."""
    import torch.nn.attention.flex_attention as flex

    refuse = flex._validate_device
    if getattr(refuse, "permits_compiled_cpu_backward", False):
        return

    def validate_device(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        if query.device.type == "cpu" and torch.compiler.is_compiling():
            return
        refuse(query, key, value)

    validate_device.permits_compiled_cpu_backward = True
    flex._validate_device = validate_device


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far (every backend, every compiled function)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompileCounter:
    """Counts graphs per phase of the run (a training step, an eval-loss pass, a generation pass).

    The first pass of each phase compiles its graphs; a graph compiled in any later pass of that phase is a
    recompilation (a shape, mode or closure that changed between passes). Generation runs uncompiled, so
    every graph it compiles counts as one."""

    def __init__(self) -> None:
        self.start = graphs_compiled()
        self.recompiles = 0
        self._phases_seen: set[str] = set()

    @property
    def graphs(self) -> int:
        return graphs_compiled() - self.start

    @contextlib.contextmanager
    def phase(self, name: str, compiles: bool = True) -> Iterator[None]:
        before = graphs_compiled()
        try:
            yield
        finally:
            new_graphs = graphs_compiled() - before
            if name in self._phases_seen or not compiles:
                self.recompiles += new_graphs
            self._phases_seen.add(name)

    def metrics(self) -> dict[str, int]:
        return {"compile/graphs": self.graphs, "compile/recompiles": self.recompiles}
