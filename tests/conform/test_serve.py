"""The pytest plugin starts the server under test itself (issue 18, item 4).

``chatprobe.targets.served`` (a child started, waited for, stopped) tested directly; the
plugin's choice of the server under test; then pytest runs in a fresh directory, as a server
team's repository would: ``tests/fixtures/tiny_app.py``, a small raw-ASGI OpenAI-compatible
app, is served by the plugin, the bundled suites run against it, and nothing is left running.
The README's recipe in a fresh virtual environment is the slow test at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import chatprobe
from chatprobe.conformrun import plugin_args
from chatprobe.errors import UsageError
from chatprobe.targets import asgi_app_server, command_server, served

pytest_plugins = ["pytester"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_APP = FIXTURES / "tiny_app.py"
REPO = Path(__file__).resolve().parents[2]
PLUGIN = tuple(plugin_args())
GONE_S = 10.0


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _poll(what: str, condition: Callable[[], bool], timeout_s: float = GONE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


def _running_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line mentions ``marker`` (a test's own tmp path)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(marker in part for part in p.info["cmdline"] or ()):
                found.append(p)
    return found


# --------------------------------------------------------------------------- targets.served


def test_served_app_answers_and_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(TINY_APP, tmp_path / "tiny_app.py")
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("TINY_APP_PID_FILE", str(pid_file))
    with served(asgi_app_server("tiny_app:app", app_dir=tmp_path, ready_path="/v1/models")) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        models = httpx.get(url + "/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["tiny-1"]
        pid = int(pid_file.read_text())
        assert pid != os.getpid() and not _gone(pid)  # a process of its own
    assert _gone(pid)


@pytest.mark.slow
def test_served_command_gets_its_port_and_its_group_is_stopped(tmp_path: Path) -> None:
    """{port} and {host} in the command, PORT in its environment; the server's own child
    (same process group) dies with it."""
    script = tmp_path / "server.py"
    script.write_text(
        "import http.server, os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'grandchild-" + tmp_path.name + "'])\n"
        "assert os.environ['PORT'] == sys.argv[2]\n"
        "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()\n"
    )
    with served(command_server(f"{sys.executable} {script} {{host}} {{port}}", cwd=tmp_path)) as url:
        assert httpx.get(url + "/", timeout=10).status_code == 200
        assert len(_running_with(tmp_path.name)) == 2  # the server and its child
    _poll("no process left", lambda: not _running_with(tmp_path.name))


def test_a_command_that_exits_is_one_error_with_its_output(tmp_path: Path) -> None:
    command = f"{sys.executable} -c \"import sys; print('starting', flush=True); sys.exit('boom: port {{port}} refused')\" {tmp_path}"
    started = time.monotonic()
    with pytest.raises(UsageError) as caught, served(command_server(command)):
        pytest.fail("the server came up")
    message = str(caught.value)
    assert "exited with status 1 before it was ready" in message
    assert re.search(r"its output ended with:\n    starting\n    boom: port \d+ refused$", message), message
    assert time.monotonic() - started < 20  # well before the readiness deadline (30 s)
    assert not _running_with(str(tmp_path))


@pytest.mark.slow
def test_a_server_never_ready_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    command = f"{sys.executable} -c \"import time; print('loading', flush=True); time.sleep(60)\" {{port}} {tmp_path}"
    with pytest.raises(UsageError) as caught, served(command_server(command, timeout_s=0.5)):
        pytest.fail("the server came up")
    assert "was not ready within 0.5 s" in str(caught.value)
    _poll("the server stopped", lambda: not _running_with(str(tmp_path)))


@pytest.mark.slow
def test_readiness_by_path_waits_for_a_2xx(tmp_path: Path) -> None:
    """Listening is not enough when a ready path is given: a 404 there is "not ready"."""
    command = f"{sys.executable} -m http.server --bind {{host}} {{port}} --directory {tmp_path}"
    with pytest.raises(UsageError, match=r"not ready within 2 s \(GET /health answered 404\)"), served(
        command_server(command, ready_path="/health", timeout_s=2)
    ):
        pytest.fail("a 404 was taken for ready")
    (tmp_path / "health").write_text("ok")
    with served(command_server(command, ready_path="/health", timeout_s=10)) as url:
        assert httpx.get(url + "/health", timeout=10).text == "ok"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: command_server("my-server --port 8000"), "must contain {port}"),
        (lambda: command_server("   "), "is empty"),
        (lambda: command_server("my-server 'unclosed {port}"), "No closing quotation"),
        (lambda: command_server("x {port}", ready_path="health"), "a path starting with /"),
        (lambda: command_server("x {port}", timeout_s=0), "serve-timeout must be between"),
        (lambda: asgi_app_server("myserver.main"), "must be module:attribute"),
        (lambda: asgi_app_server("my server:app"), "must be module:attribute"),
    ],
)
def test_serve_settings_refused(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        make()


def test_a_command_not_found_is_a_usage_error(tmp_path: Path) -> None:
    message = "cannot start the server command 'no-such-server-xyz {port}': No such file"
    with pytest.raises(UsageError, match=re.escape(message)), served(
        command_server("no-such-server-xyz {port}")
    ):
        pytest.fail("started")


# --------------------------------------------------------------------------- through pytest

SHOW = """
def test_show(pytestconfig, chatprobe_settings):
    from chatprobe.pytest_plugin import server_under_test
    print("CHOSEN", server_under_test(pytestconfig), chatprobe_settings.target)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A server team's repository: its app at the top, chatprobe importable, no chatprobe
    setting inherited from this run's environment."""
    source_root = str(Path(chatprobe.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p))
    for name in list(os.environ):
        if name.startswith("CHATPROBE_"):
            monkeypatch.delenv(name)
    shutil.copy(TINY_APP, pytester.path / "tiny_app.py")
    return pytester


@pytest.mark.parametrize(
    ("ini", "cli", "env", "expected"),
    [
        ("chatprobe_serve_app = tiny_app:app", [], {}, "('serve_app', 'tiny_app:app') None"),
        ("chatprobe_serve_app = tiny_app:app", ["--chatprobe-target", "http://cli:1"], {}, "('target', 'http://cli:1') http://cli:1"),
        ("chatprobe_target = http://ini:1", [], {"CHATPROBE_SERVE_COMMAND": "s {port}"}, "('serve_command', 's {port}') None"),
        ("", [], {}, "None None"),
    ],
)
@pytest.mark.slow
def test_the_server_under_test_is_chosen_by_level(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, cli: list[str], env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    project.makeini(f"[pytest]\n{ini}\n")
    project.makepyfile(SHOW)
    result = project.runpytest_inprocess(*PLUGIN, "-s", *cli)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*CHOSEN {expected}"])


@pytest.mark.slow
def test_two_servers_at_one_level_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nchatprobe_serve_app = tiny_app:app\nchatprobe_target = http://127.0.0.1:9\n")
    project.makepyfile(SHOW)
    result = project.runpytest_subprocess(*PLUGIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*chatprobe: --chatprobe-target and --chatprobe-serve-app are both given in the ini file*"])


def test_the_plugin_serves_the_app_runs_the_suites_and_stops_it(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README recipe (its pyproject.toml lines), two areas of the suites, beside a test of
    the team's own: the app ran in a child, the checks ran against it, and it is gone."""
    pid_file = project.path / "app.pid"
    monkeypatch.setenv("TINY_APP_PID_FILE", str(pid_file))
    project.makepyprojecttoml(
        "[tool.pytest.ini_options]\n"
        'chatprobe_serve_app = "tiny_app:app"\n'
        'chatprobe_suites = "basics, streaming"\n'
        'chatprobe_model = "tiny-1"\n'
        'chatprobe_report_dir = "chatprobe-report"\n'
    )
    project.makepyfile(test_own="def test_own():\n    assert True\n")
    result = project.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", timeout=300)
    outcomes = result.parseoutcomes()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    result.stdout.no_fnmatch_line("*Traceback*")
    document = json.loads((project.path / "chatprobe-report" / "findings.json").read_text())
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", document["run"]["target"]) and not document["run"]["embedded"]
    verdicts = {(c["area"], c["name"]): c["verdict"] for c in document["checks"]}
    assert {area for area, _ in verdicts} == {"basics", "streaming"}
    # what only this app answers: its model, listed by GET /v1/models
    assert verdicts[("basics", "test_served_model_listed")] == "pass"
    assert verdicts[("basics", "test_stream_response")] == "pass"
    assert outcomes["passed"] == 1 + sum(v in ("pass", "warn") for v in verdicts.values())
    assert _gone(int(pid_file.read_text())), "the app outlived the session"
    assert not _running_with(str(project.path))


def test_a_broken_app_stops_the_session_with_one_clear_error(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_APP_FAIL", "cannot reach the database")
    project.makeini("[pytest]\nchatprobe_serve_app = tiny_app:app\nchatprobe_suites = basics\n")
    result = project.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str()
    errors = [line for line in text.splitlines() if "chatprobe: the ASGI app tiny_app:app" in line]
    assert len(errors) == 1 and "exited with status 1 before it was ready; its output ended with:" in errors[0], text
    assert "RuntimeError: cannot reach the database" in text  # the tail of the app's own output
    assert "passed" not in text and "failed" not in text  # no check ran
    assert not _running_with(str(project.path))


@pytest.mark.slow
def test_a_bad_suites_area_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*PLUGIN, "--chatprobe-suites", "basics,nonsense")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*chatprobe: chatprobe suites: unknown area(s) nonsense; give all, or some of basics*"])


@pytest.mark.slow
def test_explicit_paths_run_without_the_suites(project: pytest.Pytester) -> None:
    """``pytest tests/x.py`` runs what it names, even with ``chatprobe_suites`` in the ini file;
    with the option on the command line the suites are collected too (without paths: the
    recipe's test above)."""
    project.makeini("[pytest]\nchatprobe_suites = basics\n")
    project.makepyfile(test_own="def test_own():\n    pass\n")
    named = project.runpytest_inprocess(*PLUGIN, "--collect-only", "-q", "test_own.py")
    assert [line for line in named.stdout.lines if "::" in line] == ["test_own.py::test_own"]
    forced = project.runpytest_inprocess(*PLUGIN, "--collect-only", "-q", "--chatprobe-suites", "streaming", "test_own.py")
    ids = [line for line in forced.stdout.lines if "::" in line]
    assert "test_own.py::test_own" in ids and any(i.startswith("test_streaming.py::") for i in ids)
    assert not any(i.startswith("test_basics.py::") for i in ids)


# --------------------------------------------------------------------------- the README, for real


def _readme_recipe() -> str:
    """The ```toml block of the README's "Run chatprobe's conformance suite from your server's
    repository" paragraph, as printed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("**Run chatprobe's conformance suite from your server's")
    match = re.search(r"```toml\n(.*?)```", text[start:], re.S)
    assert match, "the README lost its recipe"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_recipe_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """python -m venv, chatprobe installed from this checkout (a wheel, as pip builds it), a
    repository holding the README's pyproject.toml lines verbatim, the app at the module they
    name (tests/fixtures/tiny_app.py as myserver/main.py) and a test of its own; then a plain
    ``pytest`` there. Bounded: the install 10 minutes, the run 5."""
    recipe = _readme_recipe()
    app_ref = re.search(r'chatprobe_serve_app = "([\w.]+):(\w+)"', recipe)
    assert app_ref, recipe
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATPROBE_", "PYTHON", "VIRTUAL_ENV"))}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    repo = tmp_path / "server-repo"
    parts = app_ref.group(1).split(".")
    repo.mkdir()
    for depth in range(1, len(parts)):  # myserver/__init__.py ...
        package = repo.joinpath(*parts[:depth])
        package.mkdir(exist_ok=True)
        (package / "__init__.py").touch()
    shutil.copy(TINY_APP, repo.joinpath(*parts[:-1], parts[-1] + ".py"))  # ... myserver/main.py
    (repo / "pyproject.toml").write_text(recipe, encoding="utf-8")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_own.py").write_text("def test_own_behaviour():\n    assert 2 + 2 == 4\n")
    pid_file = tmp_path / "app.pid"
    run = subprocess.run(
        [str(venv / "bin" / "pytest")],  # as the README says: a plain `pytest`
        cwd=repo, capture_output=True, text=True, timeout=300, env={**env, "TINY_APP_PID_FILE": str(pid_file)},
    )
    output = run.stdout + run.stderr
    assert run.returncode in (0, 1), output[-5000:]  # the tiny app fails some checks: that is fine
    assert "Traceback" not in output, output[-5000:]
    assert re.search(r"\d+ failed, \d+ passed", output), output[-2000:]
    report_dir = re.search(r'chatprobe_report_dir = "([^"]+)"', recipe)
    assert report_dir, recipe
    document = json.loads((repo / report_dir.group(1) / "findings.json").read_text())
    # chatprobe came from the new environment (its bundled suites and specs), not this checkout
    assert str(venv) in document["run"]["profile"] and "_bundled" in document["run"]["profile"]
    areas = {c["area"] for c in document["checks"]}
    assert {"basics", "streaming", "errors", "properties"} <= areas
    passing = sum(c["verdict"] in ("pass", "warn") for c in document["checks"])
    assert passing >= 20
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) == passing + 1  # the checks that passed, and the team's own test
    assert _gone(int(pid_file.read_text()))
    assert not _running_with(str(repo))
