"""The bulk paths of chatprobe.sse in C (optional; see chatprobe.sse._scan_py)."""

from chatprobe.sse import Event

def scan(
    region: bytes,
    start: int,
    stop: int,
    prefix: bytes,
    sep: bytes,
    back: int,
    pos: int,
    last_id: str,
    first: int | None,
    arrival: int | None,
    event_type: type[Event],
    /,
) -> tuple[list[Event], int, int]: ...

def scan_named(
    region: bytes,
    start: int,
    stop: int,
    pos: int,
    last_id: str,
    first: int | None,
    arrival: int | None,
    event_type: type[Event],
    /,
) -> tuple[list[Event], int, int]: ...
