"""A run folder belongs to one run: a lock while a run writes there, and no new run over an old one.

The lock is `run.out_dir/.fcloop.lock`, held with `fcntl.flock` for the whole run: the OS releases it when the
process ends however it ends (kill -9 included), so a second process on the folder is refused while the first
lives and never after. The file also names the holder (host and pid) for the refusal's message; a name left
behind by a process that died holding it is a stale lock, taken over with a note.

A new run (`checkpoint.resume = "never"`) into a folder that holds another run's checkpoints, final adapter or
metrics is refused: mixing them would let a later resume continue the old run under new settings. So is
`"auto"` into such a folder with no checkpoint to continue from. `checkpoint.resume = "restart"` deletes that
run first, in one printed step.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from fcloop.errors import FcloopError
from fcloop.training.checkpoint import list_checkpoints

LOCK_FILE = ".fcloop.lock"
# What a run writes that belongs to it alone; config.toml and run.json are rewritten at each start anyway.
RUN_OUTPUTS = ("final", "metrics.jsonl", "tensorboard", "eval")


class RunFolderError(FcloopError, RuntimeError):
    """The run folder is in use by another process, holds another run, or cannot be written."""


def _holder_text() -> str:
    return f"host {socket.gethostname()} pid {os.getpid()}\n"


def parse_holder(text: str) -> tuple[str, int] | None:
    """(host, pid) from a lock file's text, or None when it names no holder (empty or foreign text)."""
    parts = text.split()
    if len(parts) != 4 or parts[0] != "host" or parts[2] != "pid" or not parts[3].isdigit():
        return None
    return parts[1], int(parts[3])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / LOCK_FILE
        probe.touch(exist_ok=True)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTDIR):
            raise RunFolderError(
                f"run.out_dir {out_dir} is a file, not a folder; set run.out_dir to a folder"
            ) from None
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        reason = "read-only file system" if error.errno == errno.EROFS else "permission denied"
        raise RunFolderError(
            f"run.out_dir {out_dir} cannot be written ({reason}); set run.out_dir to a folder you can write"
        ) from None


@contextlib.contextmanager
def run_folder_lock(out_dir: Path, report: Callable[[str], None] = print) -> Iterator[None]:
    """Hold `out_dir`'s lock for the block; refuse (RunFolderError naming the holder) if another process holds it."""
    _make_folder(out_dir)
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = parse_holder(os.pread(fd, 200, 0).decode("utf-8", "replace"))
            who = f"pid {holder[1]} on host {holder[0]}" if holder else "another process"
            raise RunFolderError(
                f"{out_dir} is in use by another fcloop.train ({who}); wait for it to end, or choose another "
                "run.out_dir"
            ) from None
        previous = parse_holder(os.pread(fd, 200, 0).decode("utf-8", "replace"))
        if previous is not None:  # a holder that died without releasing (the OS released its flock)
            host, pid = previous
            if host == socket.gethostname():
                state = "no longer running" if not pid_alive(pid) else "not holding it"
                report(f"note: taking over the stale lock {path} (pid {pid} on this host is {state})")
            else:
                report(f"note: taking over the lock {path} left by pid {pid} on host {host} (not held)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: a name left in the file would read as a stale lock
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def previous_run_items(out_dir: Path) -> list[Path]:
    """What another run left in `out_dir`: its step folders (complete or partial), final/, metrics and event
    files. Checkpoints first, so that a deletion cut short removes what a resume could take before the rest."""
    if not out_dir.is_dir():
        return []
    steps = sorted(p for p in out_dir.iterdir() if p.name.startswith("step_"))
    metrics = out_dir / "metrics.jsonl"
    others = [
        out_dir / name
        for name in RUN_OUTPUTS
        if (out_dir / name).exists() and not (name == "metrics.jsonl" and metrics.stat().st_size == 0)
    ]
    return steps + others


def prepare_new_run(out_dir: Path, resume: str, report: Callable[[str], None] = print) -> None:
    """Before a run writes anything: refuse a new run into a folder holding another ("never", or "auto" with no
    checkpoint to continue from), or delete that run ("restart")."""
    if resume not in ("never", "restart", "auto"):
        return  # a checkpoint path: resumed from there (fcloop.training.checkpoint checks it)
    if resume == "auto" and list_checkpoints(out_dir):
        return  # continued from its newest intact checkpoint
    items = previous_run_items(out_dir)
    if not items:
        return
    names = ", ".join(p.name for p in items)
    if resume == "never":
        raise RunFolderError(
            f'{out_dir} already holds another run ({names}); checkpoint.resume = "never" will not mix a new run '
            'into it: choose a new run.out_dir, or set checkpoint.resume = "restart" to delete that run and start '
            'over, or "auto" to continue it'
        )
    if resume == "auto":
        raise RunFolderError(
            f"{out_dir} holds a run ({names}) but no checkpoint to continue it from; a new run will not be mixed "
            'into it: choose a new run.out_dir, or set checkpoint.resume = "restart" to delete that run and start over'
        )
    report(f"restart: deleting the previous run in {out_dir}: {names}")
    for item in items:  # checkpoints first: cut short, nothing a resume could take is left beside new files
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
