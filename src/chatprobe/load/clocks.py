"""The load generator's clocks: kernel receive stamps mapped onto ``perf_counter_ns``.

On plain-TCP Linux sockets each read is stamped with the kernel's receive time
(SO_TIMESTAMPNS, read with ``recvmsg``; :class:`KernelClock`), so TTFT / ITL do
not depend on when the gevent hub got round to the socket; elsewhere (TLS, no
SO_TIMESTAMPNS, ``--stamps user``) the stamp is ``perf_counter_ns()`` as
``recv()`` returns. Deadlines (:class:`DeadlineTimers`): kernel timers an event loop
can wait for, to wake at a ``perf_counter_ns`` time. No gevent, no locust here.
"""

from __future__ import annotations

import ctypes
import os
import socket as _stdsocket
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from chatprobe.loadplan import LoadSettings

__all__ = ["ANC_BYTES", "SO_TIMESTAMPNS", "DeadlineTimers", "KernelClock", "clock_sample", "deadline_timers",
           "kernel_clock", "kernel_stamps_supported", "stamps_used"]

# Kernel receive timestamps. Python's socket module lacks the constant; 35 is
# SO_TIMESTAMPNS(_OLD) in asm-generic (x86, arm, riscv…), whose cmsg is a native
# struct timespec (two C longs). Other Linux ABIs use other numbers: no stamps there.
_SO_TIMESTAMPNS: int | None = getattr(_stdsocket, "SO_TIMESTAMPNS", None)
if _SO_TIMESTAMPNS is None and sys.platform == "linux" and os.uname().machine in {
        "x86_64", "i686", "i386", "aarch64", "armv7l", "armv6l", "riscv64", "s390x", "ppc64le"}:
    _SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANC_BYTES = _stdsocket.CMSG_SPACE(_TIMESPEC.size) if hasattr(_stdsocket, "CMSG_SPACE") else 0


class KernelClock:
    """Maps the kernel's CLOCK_REALTIME receive stamps onto ``perf_counter_ns``.

    perf_counter is CLOCK_MONOTONIC on Linux (the reference server's truth uses
    it too). The offset REALTIME - MONOTONIC is measured by sandwiching
    ``time_ns()`` between two ``perf_counter_ns()`` calls, keeping the
    narrowest of a few tries, and re-measured every ``REFRESH_NS``. Residual
    error: half the sandwich (well under 1 us here) plus NTP slewing of
    REALTIME since the last refresh (at most 500 ppm, i.e. <= 0.5 ms after
    1 s, typically a few us). A step of the wall clock is absorbed at the next
    refresh; in between the caller's clamps (not before the request went out,
    not before the previous read, not after now) keep the stamps sane.

    The kernel reports the arrival of the *last* segment a ``recvmsg`` consumed:
    when one read gathers several segments (the reader fell behind by more than
    the gap between them), all of them get that last arrival. That is never later
    than the user-space stamp it replaces.
    """

    REFRESH_NS = 1_000_000_000

    def __init__(self) -> None:
        self.offset_ns = 0  # REALTIME - MONOTONIC
        self.width_ns = 0  # the sandwich of the last measurement
        self.next_refresh_ns = 0
        self.refresh()

    def refresh(self) -> None:
        best: tuple[int, int] | None = None
        for _ in range(5):
            a = time.perf_counter_ns()
            wall = time.time_ns()
            b = time.perf_counter_ns()
            if best is None or b - a < best[0]:
                best = (b - a, wall - (a + b) // 2)
        assert best is not None
        self.width_ns, self.offset_ns = best
        self.next_refresh_ns = time.perf_counter_ns() + self.REFRESH_NS

    def to_perf(self, realtime_ns: int, now: int) -> int:
        """A REALTIME stamp taken before ``now`` (a perf_counter_ns) on perf_counter's scale."""
        if now >= self.next_refresh_ns:
            self.refresh()
        return realtime_ns - self.offset_ns

    def stamp(self, ancdata: list[tuple[int, int, bytes]], now: int) -> int | None:
        """The receive stamp in a recvmsg's ancillary data, mapped; None when absent."""
        for level, kind, data in ancdata:
            if kind == _SO_TIMESTAMPNS and level == _stdsocket.SOL_SOCKET and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)
                return self.to_perf(sec * 1_000_000_000 + nsec, now)
        return None


kernel_clock = KernelClock()


def kernel_stamps_supported() -> bool:
    """Whether this platform gives plain-TCP reads a kernel receive stamp."""
    return _SO_TIMESTAMPNS is not None and _ANC_BYTES > 0


def stamps_used(s: LoadSettings) -> str:
    """How this run's reads are stamped: "kernel" or "user" (TLS, other platforms, --stamps user)."""
    tls = urlsplit(s.target).scheme == "https"  # as client.RequestBuilder decides
    return "kernel" if s.stamps == "kernel" and kernel_stamps_supported() and not tls else "user"



def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


_BOOT_ID = _boot_id()


def clock_sample() -> dict[str, Any]:
    """This process's monotonic and wall clocks read together (see metrics.clock_offset_ns)."""
    before = time.perf_counter_ns()
    wall = time.time_ns()
    after = time.perf_counter_ns()
    return {"boot_id": _BOOT_ID, "host": _stdsocket.gethostname(),
            "perf_ns": (before + after) // 2, "wall_ns": wall}



# --------------------------------------------------------------------------- deadlines

class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


def _timerfd_libc() -> Any:
    """libc with timerfd_create / timerfd_settime typed, when they serve: Linux, and
    ``perf_counter_ns`` read from CLOCK_MONOTONIC (the timer's clock). Else None."""
    if sys.platform != "linux" or "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    except (OSError, AttributeError):  # pragma: no cover - a libc without timerfd
        return None
    return libc


class DeadlineTimers:
    """Kernel timers (Linux ``timerfd``, CLOCK_MONOTONIC, absolute) that become readable at a
    ``perf_counter_ns`` deadline to within the kernel's wake-up latency: an event loop that
    waits for one wakes at that time, not at its own timer's next whole millisecond (libev's
    epoll wait). A small free list: one timer per waiter at a time, reused."""

    def __init__(self) -> None:
        self._libc = _timerfd_libc()
        self._free: list[int] = []
        self._spec = _Itimerspec()

    @property
    def available(self) -> bool:
        return self._libc is not None

    def arm(self, due_ns: int) -> int:
        """A timer's fd, readable from ``due_ns`` on (OSError when the kernel refuses one).
        Give it back with :meth:`release` once it was read."""
        libc = self._libc
        fd = self._free.pop() if self._free else libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        spec = self._spec
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(due_ns, 1), 1_000_000_000)
        if libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, "timerfd_settime")
        return fd

    def release(self, fd: int) -> None:
        """``fd`` back after it fired (its expiry count read) or was abandoned (disarmed here)."""
        try:
            os.read(fd, 8)  # the expiry count: readable no more
        except BlockingIOError:  # not fired (the waiter was killed): disarm it
            spec = _Itimerspec()
            if self._libc.timerfd_settime(fd, 0, ctypes.byref(spec), None) != 0:
                os.close(fd)
                return
        except OSError:
            os.close(fd)
            return
        if len(self._free) < 64:
            self._free.append(fd)
        else:
            os.close(fd)


deadline_timers = DeadlineTimers()


# Public names for the client (the same objects).
SO_TIMESTAMPNS = _SO_TIMESTAMPNS
ANC_BYTES = _ANC_BYTES
