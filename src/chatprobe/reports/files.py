"""How a report file reaches the disk: whole or not at all, and never a previous run's left looking current.

    write_text(path, text)        written beside the file, then renamed over it (a reader, or a
                                  run killed mid-write, sees the old file or the new, never half);
                                  secrets scrubbed first (chatprobe.redact)
    remove_stale(dir, names, dirs) a run's outputs from an earlier run, removed before the run starts
                                  (a run that fails or is interrupted then leaves none of them)
    append_text(path, text)       appended to a file another writes too (a CI's job summary), in
                                  one write; secrets scrubbed first
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from chatprobe import redact


def write_text(path: Path, text: str, *, newline: str | None = None) -> Path:
    text = redact.scrub(text)  # the one redaction rule: no secret of the run reaches a file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return path


def append_text(path: Path, text: str) -> Path:
    """``text`` appended to ``path`` (created if absent) in one write call: for a file that is
    not ours alone, such as ``$GITHUB_STEP_SUMMARY``, which cannot be replaced whole."""
    data = redact.scrub(text).encode("utf-8")
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return path


def remove_stale(report_dir: Path, names: Iterable[str | Path], dirs: Iterable[str] = ()) -> None:
    """Remove the files ``names`` and our own subdirectories ``dirs`` under ``report_dir`` if
    present (a name that turned out to be a directory is left alone: it is not ours)."""
    for name in names:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            (Path(report_dir) / name).unlink()
    for name in dirs:
        path = Path(report_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
