"""Helpers for the `chatprobe report` tests: run it in-process, snapshot and delete renderings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from chatprobe.cli import main

# A key that must never reach a rendering: the runs send it, the JSON redacts it.
SECRET = "sk-chatprobe-report-test-7c1f9e2a"
KEY_ENV = "CHATPROBE_REPORT_TEST_KEY"


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what the run before printed is not ours
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def take(directory: Path, names: list[str]) -> dict[str, bytes]:
    """The renderings' bytes, then deleted (so `report` must recreate them)."""
    saved = {}
    for name in names:
        path = directory / name
        saved[name] = path.read_bytes()
        path.unlink()
    return saved


def csv_rows(path: Path) -> list[list[str]]:
    """The rows of a CSV rendering (header first); RFC 4180 line ends checked on the way."""
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))


def assert_no_secret(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def assert_recreated(capsys: pytest.CaptureFixture[str], directory: Path, names: list[str]) -> None:
    """`chatprobe report DIR` rewrites each rendering byte for byte and says so, one line each."""
    original = take(directory, names)
    code, out, err = report(capsys, str(directory))
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"wrote {directory / name}" for name in names]
    for name in names:
        assert (directory / name).read_bytes() == original[name], name
