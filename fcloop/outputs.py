"""What a command writes: never over what it did not write, never into what it reads, never half a result.

A command's output (fcloop.export's merged model, fcloop.eval's files, fcloop.inspect's dump) goes to a new
path; an existing one is refused unless the user passes `--overwrite`, and a folder the command reads from (an
adapter, a checkpoint) is refused even then. Each output is written under a temporary sibling name and renamed
when complete, so an interrupted command leaves the old output or none, never a mix.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from fcloop.errors import FcloopError


class OutputRefused(FcloopError, FileExistsError):
    """The output path holds something the command did not write, or is a folder the command reads from."""

    exit_code = 2


def within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (resolved: links and `..` followed)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def refuse_overwrite(
    out: Path, overwrite: bool, reads: Sequence[Path] = (), names: Sequence[str] | None = None
) -> None:
    """Raise OutputRefused if writing `out` would overwrite without `--overwrite` (an existing file, a non-empty
    folder; with `names`, only those files inside the folder count), or would write into, or replace a folder
    holding, one of `reads`."""
    for source in reads:
        # Replaced whole (names None), `out` must not hold a source either: replacing it would delete the source.
        if within(out, source) or (names is None and within(source, out)):
            raise OutputRefused(
                f"{out}: the output would be written into {source}, which this command reads from; choose another "
                "output path"
            )
    if not out.exists() or overwrite:
        return
    if out.is_dir():
        taken = sorted(p.name for p in out.iterdir() if names is None or p.name in names)
        if not taken:
            return
        shown = ", ".join(taken[:5]) + (", ..." if len(taken) > 5 else "")
        raise OutputRefused(
            f"{out} is not empty ({shown}); choose a new output path, or pass --overwrite to replace "
            f"{'it' if names is None else 'those files'}"
        )
    raise OutputRefused(f"{out} already exists; choose a new output path, or pass --overwrite to replace it")


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@contextlib.contextmanager
def written_atomically(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to write (a file or a folder); when the block completes, it replaces
    `out`; when it fails, it is removed and `out` is as it was."""
    partial = partial_path(out)
    _remove(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    if out.is_dir() and not partial.is_dir():
        raise OutputRefused(f"{out} is a folder; name a file")
    _remove(out)  # checked by refuse_overwrite before any work: empty, or --overwrite given
    partial.rename(out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
