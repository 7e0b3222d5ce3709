"""`python -m torch.distributed.run ... tests/training/leave_probe.py CONFIG [overrides]`: fcloop.train's command,
with a look at each rank as it leaves its process group.

Each rank writes to $LEAVE_PROBE_DIR/rank<N>.json how many parameters (of any model) are still alive at that
moment: the run's model must be collected by then, because left to the interpreter's exit its collection races
gloo's worker threads and can abort a rank after a finished run. Rank 1 then waits half a second before it
leaves, as a loaded machine can make it do, so that rank 0 leaves and exits first."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from fcloop.errors import run_cli
from fcloop.train import main

leave_process_group = dist.destroy_process_group


def observed_leave(*args, **kwargs) -> None:
    rank = dist.get_rank()
    # type(), not isinstance: isinstance reads __class__, which deprecated module proxies answer with a warning.
    alive = sum(issubclass(type(thing), torch.nn.Parameter) for thing in gc.get_objects())
    Path(os.environ["LEAVE_PROBE_DIR"], f"rank{rank}.json").write_text(json.dumps({"parameters_alive": alive}))
    if rank == 1:
        time.sleep(0.5)
    leave_process_group(*args, **kwargs)


if __name__ == "__main__":
    dist.destroy_process_group = observed_leave
    sys.exit(run_cli(main))
