"""The one owner of child processes: every process chatprobe starts is started here, and dies with it.

    spawn(argv, **popen)        a child in a process group of its own, armed to die with us
    started(argv, **popen)      spawn, and stop the child when the ``with`` block ends (however)
    run(argv, timeout_s, ...)   ``subprocess.run`` through spawn: the group stopped on a timeout
                                or an interruption, never left running
    stop(child, grace_s)        SIGTERM to the child's group, SIGKILL after grace_s; reaped
    signal_group(child, sig)    a signal to the child's whole group
    signal_handlers()           the CLI's SIGINT / SIGTERM / SIGHUP policy (below), for a block
    python_env(extra)           the environment of a Python child importing this chatprobe

How a child dies with its parent, however the parent dies:

- **its own process group** (``process_group=0``): a terminal's Ctrl-C reaches the CLI
  alone, which decides what its children get; :func:`stop` signals the whole group, so
  a grandchild left in it goes too.
- **the parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set between
  fork and exec): when the parent dies, even by SIGKILL, the kernel kills the child. A
  parent that died before the child armed it is caught right after (``getppid()`` is no
  longer the parent: the child kills itself). The kernel sends it when the *thread* that
  spawned the child ends: spawn from the thread that waits for the child (every caller
  here does). A child that starts children of its own through this module (the Locust
  master and its workers) arms them the same way, so a chain dies link by link.
- **the parent's own interruption** (:func:`signal_handlers`, around every CLI command):
  the first SIGINT, SIGTERM or SIGHUP sends SIGTERM to every live child's group, raises
  ``KeyboardInterrupt`` in the main thread (each command writes what it has, marked
  interrupted, and exits 130) and SIGKILLs any child still alive :data:`ESCALATE_S`
  later; from then on no new child is started. A second signal kills every child's group
  and exits 130 at once. The interruption is never lost: one that comes while
  :func:`spawn` forks is raised when the fork is over (raised in the fork's after-fork
  callbacks Python would swallow it), and one swallowed anywhere else (a finalizer, a
  weakref callback: "Exception ignored in") is delivered to the main thread again.
- **an ordinary exit** with a child still registered (a bug): ``atexit`` stops it.

Without ``prctl`` (not Linux) the last three still hold; a SIGKILLed parent then leaves
its children to end on their own.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "ESCALATE_S",
    "STOP_GRACE_S",
    "interrupted",
    "live",
    "python_env",
    "run",
    "signal_group",
    "signal_handlers",
    "spawn",
    "started",
    "stop",
    "stop_all",
]

STOP_GRACE_S = 5.0  # SIGTERM, then this long before SIGKILL
ESCALATE_S = 10.0  # after an interruption: children still alive this long later are killed
INTERRUPTED_EXIT = 130
PR_SET_PDEATHSIG = 1

# Resolved once, here: between fork and exec the child only calls it (no import, no lookup).
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
    _prctl = None

_live: dict[int, subprocess.Popen[Any]] = {}  # pid -> child, until stopped or reaped
_interrupted: list[int] = []  # the signal that interrupted us, once it came
_forking: list[bool] = []  # non-empty while spawn forks: the interruption is raised after it
_redeliver: list[int] = []  # an interruption swallowed where exceptions cannot propagate, sent again


def interrupted() -> bool:
    """Whether a SIGINT / SIGTERM / SIGHUP reached the CLI (no new child is started then)."""
    return bool(_interrupted)


def live() -> list[subprocess.Popen[Any]]:
    """The children started here and not yet reaped."""
    return [p for p in list(_live.values()) if p.returncode is None]


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment, with this chatprobe importable in a Python child (a checkout needs
    PYTHONPATH), plus ``extra``."""
    env = dict(os.environ)
    source_root = str(Path(__file__).resolve().parent.parent)  # a checkout's src/, or site-packages
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def _arm(parent: int, cpus: frozenset[int] | None, held: frozenset[int] = frozenset()) -> Callable[[], None]:
    """What the child runs between fork and exec: die with ``parent``, optionally pinned, and
    the ``held`` signals blocked (the mask survives exec: they stay pending until it unblocks them)."""

    def preexec() -> None:
        if held:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the signal was armed
                os.kill(os.getpid(), signal.SIGKILL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return preexec


def spawn(argv: Sequence[str], *, cpus: set[int] | None = None, hold_signals: Sequence[int] = (),
          **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **popen)`` in a process group of its own, killed when we die
    (module docstring); ``cpus`` pins it. ``hold_signals`` start blocked in the child, for a
    child that installs its handlers first thing and then unblocks them (``loadtests/run.py``):
    a signal sent while the interpreter is still starting waits for its handler instead of
    meeting Python's default one (a KeyboardInterrupt traceback). Raises KeyboardInterrupt once
    we were interrupted."""
    if _interrupted:
        raise KeyboardInterrupt
    for owned in ("process_group", "start_new_session", "preexec_fn"):
        if owned in popen:
            raise TypeError(f"children.spawn sets {owned} itself")
    # subprocess.Popen looked up now: under gevent (the Locust master) it is gevent's.
    # An interruption while it forks is recorded, not raised (_on_signal): raised in the
    # fork's after-fork callbacks (logging's lock release) it would be swallowed, and lost.
    _forking.append(True)
    try:
        child: subprocess.Popen[Any] = subprocess.Popen(
            list(argv), process_group=0,
            preexec_fn=_arm(os.getpid(), frozenset(cpus) if cpus else None, frozenset(hold_signals)), **popen
        )
    finally:
        _forking.pop()
    _live[child.pid] = child
    if _interrupted:  # it came while we forked: the new child goes at once, the caller learns it
        stop(child, 0.0)
        raise KeyboardInterrupt
    return child


def signal_group(child: subprocess.Popen[Any], sig: int) -> None:
    """``sig`` to the child's process group (its grandchildren in it too); quiet when gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def stop(child: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> int | None:
    """SIGTERM to the child's group; SIGKILL to it after ``grace_s``; the child reaped.
    Returns its exit status (None if even SIGKILL did not reap it within a few seconds)."""
    try:
        if child.poll() is None:
            signal_group(child, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(grace_s)
        # The leader may be gone while a grandchild in its group is not.
        signal_group(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5.0)
    finally:
        _live.pop(child.pid, None)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    return child.returncode


def stop_all(grace_s: float = STOP_GRACE_S) -> None:
    """Stop every child still registered: SIGTERM to all at once, then SIGKILL after grace_s."""
    children = list(_live.values())
    for child in children:
        signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        stop(child, 0.0)


@contextlib.contextmanager
def started(argv: Sequence[str], *, grace_s: float = STOP_GRACE_S, **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """:func:`spawn` for the ``with`` block; :func:`stop` when it ends, however it ends."""
    child = spawn(argv, **popen)
    try:
        yield child
    finally:
        stop(child, grace_s)


def run(
    argv: Sequence[str], *, timeout_s: float | None, env: Mapping[str, str] | None = None, grace_s: float = STOP_GRACE_S
) -> subprocess.CompletedProcess[str]:
    """Like ``subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)``; on the
    timeout (``subprocess.TimeoutExpired`` raised) or any exception the child's group is stopped."""
    child = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except BaseException:
        stop(child, grace_s)
        raise
    _live.pop(child.pid, None)
    signal_group(child, signal.SIGKILL)  # anything it left behind in its group
    return subprocess.CompletedProcess(list(argv), child.returncode, out, err)


# --------------------------------------------------------------------------- the CLI's signals

_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _escalate() -> None:
    deadline = time.monotonic() + ESCALATE_S
    while time.monotonic() < deadline and live():
        time.sleep(0.1)
    for child in live():
        signal_group(child, signal.SIGKILL)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _redeliver:  # our own second delivery of the first signal (_unraisable_hook)
        _redeliver.clear()
        if not _forking:
            raise KeyboardInterrupt
        return
    if _interrupted:  # a second signal: no more patience
        for child in list(_live.values()):
            signal_group(child, signal.SIGKILL)
        os._exit(INTERRUPTED_EXIT)
    _interrupted.append(signum)
    for child in live():
        signal_group(child, signal.SIGTERM)
    threading.Thread(target=_escalate, name="chatprobe-children-escalate", daemon=True).start()
    if not _forking:  # spawn raises it once the fork is over
        raise KeyboardInterrupt


def _redeliver_soon(signum: int) -> None:
    time.sleep(0.01)  # out of the code that swallowed it
    if signal.getsignal(signum) is _on_signal:  # else a command's own handler takes it as a signal
        _redeliver.append(signum)
    # A real signal (not _thread.interrupt_main): it also ends a blocking wait in the main thread.
    signal.pthread_kill(threading.main_thread().ident or 0, signum)


def _unraisable_hook(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """A KeyboardInterrupt our handler raised where Python cannot propagate it (a finalizer,
    an after-fork or weakref callback: "Exception ignored in ...") would leave the command
    running as if never interrupted; it is delivered again from the main thread instead,
    and no traceback is printed for it. Anything else goes to the previous hook."""

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _interrupted:
            threading.Thread(target=_redeliver_soon, args=(_interrupted[0],),
                             name="chatprobe-children-redeliver", daemon=True).start()
            return
        previous(unraisable)

    return hook


@contextlib.contextmanager
def signal_handlers() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP interrupt the command (module docstring) inside the block;
    the previous handlers are back after it. Nothing changes outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in _HANDLED}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@atexit.register
def _at_exit() -> None:
    if _live:
        stop_all(1.0)
