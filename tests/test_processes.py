"""Every process chatprobe starts dies with it (issue 14, items 3 and 5).

Each long-running command (conform, load, sweep, audit, serve) runs through the real CLI
in a session of its own; once its children exist it gets SIGTERM (it exits 130 and says
``interrupted`` in its JSON) or SIGKILL (its children die by their parent-death signal),
and then no process of that session may be left. Zombies count as gone: a killed CLI's
children are reparented and reaped by whoever reaps here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from chatprobe.loadplan import max_processes
from chatprobe.server.runner import spawn_server

SRC = str(Path(__file__).resolve().parents[1] / "src")
START_S = 60.0  # until the command's children exist (2 shared CPUs, a loaded machine)
GONE_S = 10.0  # after the signal: every process of the session gone


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def session_processes(sid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of session ``sid``."""
    found = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(p.pid) == sid:
                found.append(p)
    return found


def _poll(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


@contextlib.contextmanager
def cli(args: list[str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m chatprobe ARGS`` in a new session (its descendants keep that session id
    even when reparented); whatever is left of the session is killed at the end."""
    with open(tmp_path / "stdout.txt", "wb") as out, open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "chatprobe", *args], stdout=out, stderr=err,
                                env=_env(), cwd=tmp_path, start_new_session=True)
    try:
        yield proc
    finally:
        for p in session_processes(proc.pid):
            with contextlib.suppress(psutil.Error):
                p.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _wait_for_children(proc: subprocess.Popen[bytes], count: int, ready: Callable[[], bool]) -> None:
    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the command ended early (exit {proc.returncode})")
        return len(session_processes(proc.pid)) >= count and ready()

    _poll(f"{count} processes", started, START_S)


def _stop_and_check(proc: subprocess.Popen[bytes], sig: int, tmp_path: Path) -> None:
    os.kill(proc.pid, sig)
    # The CLI gets the time to write what it has; its descendants none beyond GONE_S.
    proc.wait(GONE_S + 20.0 if sig == signal.SIGTERM else GONE_S)
    _poll("no process left", lambda: not session_processes(proc.pid), GONE_S)
    err = (tmp_path / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in err, err


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _exists(path: Path) -> Callable[[], bool]:
    return path.is_file


# --------------------------------------------------------------------------- conform (fast)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_conform_leaves_no_process(sig: int, tmp_path: Path) -> None:
    report = tmp_path / "report"
    with cli(["conform", "--report-dir", str(report), "--quiet"], tmp_path) as proc:
        # The CLI and its reference server; findings.json: the first check has ended.
        _wait_for_children(proc, 2, _exists(report / "findings.json"))
        _stop_and_check(proc, sig, tmp_path)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
        doc = _json(report / "findings.json")
        assert doc["state"] == "interrupted" and doc["exit_code"] == 130
        assert "INTERRUPTED" in (report / "findings.html").read_text(encoding="utf-8")
        assert 'name="chatprobe_state" value="interrupted"' in (report / "junit.xml").read_text(encoding="utf-8")
        assert "INTERRUPTED" in (tmp_path / "stdout.txt").read_text(encoding="utf-8")
        assert (tmp_path / "stderr.txt").read_text().strip().splitlines() == ["chatprobe conform: interrupted"]


def test_failed_conform_leaves_no_earlier_report(tmp_path: Path) -> None:
    """A run that cannot happen (nothing listens at the target) must not leave an earlier
    run's findings looking current."""
    report = tmp_path / "report"
    report.mkdir()
    names = ["findings.json", "findings.html", "junit.xml", "checks.csv"]
    for name in names:
        (report / name).write_text("from an earlier run", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "chatprobe", "conform", "--target", "http://127.0.0.1:9",
                           "--report-dir", str(report)], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert [n for n in names if (report / n).exists()] == []


# --------------------------------------------------------------------------- the interruption is never lost

_SWALLOWED = r"""
import os, signal, subprocess, sys, time
from chatprobe import children

def report(what):
    print(what, flush=True)

with children.signal_handlers():
    try:
        if sys.argv[1] == "fork":
            # The signal reaches us inside the fork's after-fork callbacks, where a raised
            # exception is printed ("Exception ignored in") and dropped.
            os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))
            child = children.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
            report(f"spawn returned; child alive: {child.poll() is None}")
        else:
            class Finalized:
                def __del__(self):
                    os.kill(os.getpid(), signal.SIGTERM)
                    sum(range(1000))  # the handler runs (and raises) here, in the finalizer

            obj = Finalized()
            del obj
        time.sleep(20)
        report("not interrupted")
    except KeyboardInterrupt:
        report(f"interrupted; children left: {len(children.live())}")
"""


@pytest.mark.parametrize("where", ["fork", "finalizer"])
def test_an_interruption_python_would_swallow_still_interrupts(where: str, tmp_path: Path) -> None:
    """A signal whose KeyboardInterrupt Python drops (raised in an after-fork callback, a
    finalizer) still interrupts the command, at once, with no traceback, no child left."""
    script = tmp_path / "swallowed.py"
    script.write_text(_SWALLOWED, encoding="utf-8")
    started_at = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script), where], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        for p in session_processes(proc.pid):
            with contextlib.suppress(psutil.Error):
                p.kill()
    assert out.strip().splitlines() == ["interrupted; children left: 0"], (out, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert time.monotonic() - started_at < 15  # not after the 20 s sleep
    _poll("no process left", lambda: not session_processes(proc.pid), GONE_S)


# --------------------------------------------------------------------------- serve (fast)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_serve_leaves_no_process(sig: int, tmp_path: Path) -> None:
    with cli(["serve", "--port", "0"], tmp_path) as proc:
        _wait_for_children(proc, 1, lambda: b"listening on" in (tmp_path / "stdout.txt").read_bytes())
        _stop_and_check(proc, sig, tmp_path)
    if sig == signal.SIGTERM:
        assert proc.returncode in (0, 130), proc.returncode  # a server's SIGTERM is its way to stop


# --------------------------------------------------------------------------- --processes


def test_processes_beyond_the_machine_is_one_line_usage_error(tmp_path: Path) -> None:
    for count in (100000, max_processes() + 1):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "chatprobe", "load", "--processes", str(count), "--duration",
                               "1", "--report-dir", str(tmp_path)], capture_output=True, text=True, env=_env(),
                              timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "--processes" in proc.stderr
        assert time.monotonic() - started < 10  # nothing was spawned
        assert not (tmp_path / "summary.json").exists()
    assert f"at most {max_processes()}" in proc.stderr  # the machine's own bound


# --------------------------------------------------------------------------- load, sweep, audit


@pytest.mark.parametrize("sig", [
    pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow),
    pytest.param(signal.SIGKILL, id="SIGKILL"),  # the default run's chain: CLI -> master -> workers
])
def test_load_leaves_no_process(sig: int, tmp_path: Path) -> None:
    """The reference server, the Locust master and its two workers (grandchildren)."""
    report = tmp_path / "report"
    with cli(["load", "--processes", "2", "--users", "2", "--duration", "60", "--max-tokens", "8",
              "--report-dir", str(report)], tmp_path) as proc:
        # CLI + server + master + 2 workers; a progress line: the load is running.
        _wait_for_children(proc, 5, lambda: b"requests" in (tmp_path / "stderr.txt").read_bytes())
        _stop_and_check(proc, sig, tmp_path)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
        assert _json(report / "summary.json")["run"]["interrupted"] is True
        assert (report / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_sweep_leaves_no_process(sig: int, tmp_path: Path) -> None:
    report = tmp_path / "report"
    with cli(["sweep", "--slo", "ttft_p95_ms=5000", "--budget", "5m", "--level-duration", "30",
              "--max-tokens", "8", "--report-dir", str(report)], tmp_path) as proc:
        # CLI + server + one level's generator, measuring.
        _wait_for_children(proc, 3, lambda: b"sweep level" in (tmp_path / "stderr.txt").read_bytes())
        _stop_and_check(proc, sig, tmp_path)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
        doc = _json(report / "sweep.json")
        assert doc["run"]["interrupted"] is True and doc["stop"]["kind"] == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_audit_leaves_no_process(sig: int, tmp_path: Path) -> None:
    """Two targets on one server: audited one after the other, each by a child conform run."""
    with spawn_server(ttft_ms=100) as url:
        targets = tmp_path / "TARGETS.yaml"
        targets.write_text(yaml.safe_dump({"targets": [
            {"name": "one", "url": url, "dialect": "openai"}, {"name": "two", "url": url, "dialect": "openai"},
        ]}), encoding="utf-8")
        report = tmp_path / "report"
        with cli(["audit", str(targets), "--report-dir", str(report), "--quiet"], tmp_path) as proc:
            _wait_for_children(proc, 2, _exists(report / "targets" / "one" / "findings.json"))
            _stop_and_check(proc, sig, tmp_path)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
        doc = _json(report / "audit.json")
        assert doc["run"]["interrupted"] is True and doc["exit_code"] == 130
        assert {t["name"]: t["reason"] for t in doc["targets"]} == {"one": "interrupted", "two": "interrupted"}
        assert _json(report / "targets" / "one" / "findings.json")["state"] == "interrupted"


# --------------------------------------------------------------------------- nothing measured


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and reads requests, and never answers one."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(srv.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        srv.close()


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_load_that_measured_nothing_exits_1_with_one_line(tmp_path: Path) -> None:
    with silent_server() as url:
        proc = subprocess.run([sys.executable, "-m", "chatprobe", "load", "--target", url, "--users", "2",
                               "--duration", "1", "--no-progress", "--report-dir", str(tmp_path)],
                              capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("chatprobe load: error: ") and "nothing was measured" in proc.stderr, proc.stderr
    assert _json(tmp_path / "summary.json")["summary"]["requests"]["total"] == 0


@pytest.mark.slow
def test_sweep_that_measured_nothing_exits_1_with_one_line(tmp_path: Path) -> None:
    with silent_server() as url:
        proc = subprocess.run([sys.executable, "-m", "chatprobe", "sweep", "--target", url, "--slo", "ttft_p95_ms=500",
                               "--budget", "30s", "--level-duration", "1", "--no-progress",
                               "--report-dir", str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("chatprobe sweep: error: no level measured anything"), proc.stderr


# --------------------------------------------------------------------------- signals at start-up

_SLOW_STARTER = """
import signal, sys, time
time.sleep(0.5)  # the interpreter still starting: no handler of ours yet
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
time.sleep(10)
sys.exit(0)
"""


def test_a_signal_during_start_up_waits_for_the_childs_handler() -> None:
    """children.spawn(hold_signals=...): a SIGINT sent before the child installed its handler stays
    pending until it unblocks it (exit 130, no traceback); without it, Python's default handler
    meets it (the KeyboardInterrupt traceback the generator used to print) or, where the shell
    started us with SIGINT ignored, it is lost and the child runs on: either way no 130."""
    from chatprobe import children

    child = children.spawn([sys.executable, "-c", _SLOW_STARTER], stderr=subprocess.PIPE,
                           hold_signals=(signal.SIGINT,))
    try:
        time.sleep(0.1)
        children.signal_group(child, signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        children.stop(child, 0.0)
    assert child.returncode == 130 and b"Traceback" not in err, err
