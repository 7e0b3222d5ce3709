"""One error surface for every command: an expected failure prints one message and exits non-zero.

Expected failures are the ones a user causes or meets (a bad row, a missing file, an unreachable hub, out of
memory, a refused resume, a full disk, a non-finite loss): their message already says what, where and what to
do, so a traceback would only bury it. Anything else is a bug and keeps its traceback. `FCLOOP_DEBUG=1` shows
the traceback of expected failures too.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

DEBUG_VARIABLE = "FCLOOP_DEBUG"
DEBUG_HINT = f"({DEBUG_VARIABLE}=1 shows the traceback)"
OUT_OF_MEMORY_ADVICE = (
    "lower train.micro_batch_size (raise train.grad_accum_steps to keep the step's rows), lower data.max_seq_len, "
    "set train.activation_checkpointing = true, or lower train.loss_chunk_tokens"
)


class FcloopError(Exception):
    """An expected failure whose message names what went wrong, where, and what to do about it."""

    exit_code = 1


def _is_cuda_out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to look at an error
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def expected_message(error: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for an expected failure; None for anything else (a bug: keep the traceback)."""
    if isinstance(error, FcloopError):
        return str(error), error.exit_code
    if _is_cuda_out_of_memory(error):
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "CUDA out of memory"
        return f"out of memory on the GPU ({first_line}); to fit, {OUT_OF_MEMORY_ADVICE}", 1
    if isinstance(error, FloatingPointError):  # the loop's non-finite loss: its message names the step
        return str(error), 1
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the device{where}; free some space or point run.out_dir elsewhere", 1
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)) and error.filename:
        return f"{error.filename}: {error.strerror}", 1
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    return None


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def run_cli(main: Callable[..., object], *args: object) -> int:
    """Run a command's `main(*args)` and turn an expected failure into its message on stderr and its exit code.
    `main` returns its exit code (anything that is not an int counts as success)."""
    try:
        result = main(*args)
    except BaseException as error:
        expected = expected_message(error)
        if expected is None or debug_enabled():
            raise
        message, code = expected
        print(f"error: {message}\n{DEBUG_HINT}", file=sys.stderr)
        return code
    return result if isinstance(result, int) else 0
