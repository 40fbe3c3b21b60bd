"""Hatchling build hook: compile the optional C accelerator ``chatprobe._ssefast``.

It compiles ``src/chatprobe/_ssefast.c`` with the building interpreter's own
settings (sysconfig's CC, CFLAGS, CCSHARED, LDSHARED, include dir and
EXT_SUFFIX) and no build dependency beyond hatchling. A wheel then carries the
extension and a platform tag; an editable install builds it in place in
``src/chatprobe/``. If compiling fails (no compiler, no Python headers, an
unusual platform) or ``CHATPROBE_NO_EXT=1`` is set, it prints one warning line
and the wheel is pure Python: ``chatprobe.sse`` then uses its Python loop. The
install never fails because of the accelerator.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SOURCE = Path("src", "chatprobe", "_ssefast.c")
_TIMEOUT_S = 120


class CompileError(Exception):
    """The extension could not be compiled; the message says why in one line."""


def compile_extension(source: Path, target: Path, workdir: Path) -> None:
    """Compile and link ``source`` into the extension module ``target``."""
    config = sysconfig.get_config_vars()
    cc = config.get("CC")
    ldshared = config.get("LDSHARED")
    if not cc or not ldshared:  # e.g. Windows builds of CPython carry no CC
        raise CompileError("this Python's sysconfig names no C compiler")
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise CompileError(f"Python.h not found in {include}")
    cflags = shlex.split(config.get("CFLAGS") or "") + shlex.split(config.get("CCSHARED") or "")
    obj = workdir / "_ssefast.o"
    # -O2 last, so it wins over the interpreter's own -O level.
    _run([*shlex.split(cc), *cflags, "-O2", f"-I{include}", "-c", str(source), "-o", str(obj)])
    _run([*shlex.split(ldshared), str(obj), "-o", str(target)])


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompileError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise CompileError(f"{argv[0]} exited {done.returncode}: {lines[0] if lines else ''}")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds the compiled ``chatprobe._ssefast`` to the wheel when it compiles."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._workdir: str | None = None
        if os.environ.get("CHATPROBE_NO_EXT") == "1":
            self._skip("CHATPROBE_NO_EXT=1")
            return
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        source = Path(self.root, _SOURCE)
        if version == "editable":
            # In place, next to the sources the editable install points at.
            target = source.with_name("_ssefast" + suffix)
            workdir = Path(tempfile.mkdtemp(prefix="chatprobe-ext-"))
            try:
                compile_extension(source, target, workdir)
            except CompileError as exc:
                self._skip(str(exc))
                return
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        else:
            # Kept until finalize(): hatchling copies force-included files then.
            self._workdir = tempfile.mkdtemp(prefix="chatprobe-ext-")
            target = Path(self._workdir, "_ssefast" + suffix)
            try:
                compile_extension(source, target, Path(self._workdir))
            except CompileError as exc:
                self._cleanup()
                self._skip(str(exc))
                return
            build_data["force_include"][str(target)] = f"chatprobe/_ssefast{suffix}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if getattr(self, "_workdir", None):
            shutil.rmtree(str(self._workdir), ignore_errors=True)
            self._workdir = None

    def _skip(self, why: str) -> None:
        self.app.display_warning(
            f"chatprobe: building without the C accelerator ({why}); the SSE decoder uses pure Python"
        )
