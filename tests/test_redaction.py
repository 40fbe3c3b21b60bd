"""The one redaction rule (chatprobe.redact): a planted key is absent from every file a run writes,
its stdout and stderr and every command line `ps` shows, via every input path.

Input paths: ``--api-key-env`` (the default ``Authorization`` header), a profile's own auth header
(a name with no "key" in it: only the profile says it carries the key), ``--header`` with
``${VAR}`` and a literal credential-named ``--header``, a targets file's ``api_key_env`` and
``${VAR}`` headers, a URL's ``user:password`` and a key-like query parameter (``?api_key=``), and
``--target-env``. The target is a hostile server that echoes every request (headers, path and
query) back in its status line's body, its response headers, a stream's text and a malformed
frame: what a real server's error message may do with a key. Runs go through the real CLI in
subprocesses; every file under the report directory is read as bytes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from chatprobe import redact
from chatprobe.conformance import findings_document
from tests.hostile import SSE_HEAD, Server, chunk, read_request, serving, wants_stream

SRC = str(Path(__file__).resolve().parents[1] / "src")

KEY = "sk-planted-env-7f3a9c1e5b"  # --api-key-env / api_key_env
PROFILE_KEY = "sk-planted-profile-2d8e4a"  # --api-key-env with a profile's own auth header
HEADER_KEY = "sk-planted-header-var-91c4"  # --header 'X-...: ${VAR}' / a targets file's ${VAR}
LITERAL_KEY = "sk-planted-literal-55aa01"  # --header 'X-Api-Key: literal'
PASSWORD = "pw-planted-6b1f0d"  # http://user:PASSWORD@host
QUERY_KEY = "qk-planted-3e7d22"  # ?api_key=QUERY_KEY
SECRETS = (KEY, PROFILE_KEY, HEADER_KEY, LITERAL_KEY, PASSWORD, QUERY_KEY)
ENV = {"PLANTED_KEY": KEY, "PLANTED_PROFILE_KEY": PROFILE_KEY, "PLANTED_HEADER": HEADER_KEY}


def _forms(secret: str) -> set[str]:
    """What a leak could look like: raw, URL- or JSON-escaped, and inside a Basic credential."""
    return {
        secret,
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        base64.b64encode(f"user:{secret}".encode()).decode(),
        base64.b64encode(f"planted-user:{secret}".encode()).decode(),
    }


def _leaks(text: str | bytes, secrets: Sequence[str] = SECRETS) -> list[str]:
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return sorted({s for s in secrets for form in _forms(s) if form in data})


def assert_no_leak(report_dir: Path, result: subprocess.CompletedProcess[str], secrets: Sequence[str] = SECRETS) -> int:
    """No secret in any file under ``report_dir`` nor in the run's stdout and stderr; returns the
    number of files read."""
    leaks = {str(p.relative_to(report_dir)): _leaks(p.read_bytes(), secrets) for p in report_dir.rglob("*") if p.is_file()}
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, f"secrets in report files: {leaks}"
    assert not _leaks(result.stdout, secrets), result.stdout[-2000:]
    assert not _leaks(result.stderr, secrets), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return sum(1 for p in report_dir.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the echoing server


def _echo_handler(conn: socket.socket, server: Server) -> None:
    """Every request echoed back: a stream gets its text and a malformed frame made of the
    request; any other request a 400 whose message and headers repeat it."""
    while not server.stopping.is_set():
        request = read_request(conn, server)
        if request is None:
            return
        head, body = request
        echo = head.decode("latin-1").replace("\r\n", " | ")[:4000]
        auth = [line.partition(b":")[2].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"authorization:")]
        if wants_stream(body):
            delta = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": echo}, "finish_reason": None}]}
            events = b"data: " + json.dumps(delta).encode() + b"\n\n"
            events += b"data: {not json: " + echo.encode("latin-1") + b"\n\n"
            events += b"data: [DONE]\n\n"
            conn.sendall(SSE_HEAD + chunk(events) + chunk(b""))
            continue
        payload = json.dumps({"error": {"message": f"rejected: {echo}", "type": "invalid_request_error",
                                        "param": None, "code": None}}).encode()
        extra = b"".join(b"X-Echo-Authorization: " + a + b"\r\nSet-Cookie: sid=" + a.split(b" ")[-1] + b"\r\n" for a in auth)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n" + extra
                     + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with serving(_echo_handler) as server:
        yield server.url


def _with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://planted-user:{PASSWORD}@")


# --------------------------------------------------------------------------- running the CLI


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPROBE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    env.update(ENV)
    env.update(extra or {})
    return env


class ArgvWatch:
    """Every process's command line (``/proc/*/cmdline``, what ``ps`` shows), read every 20 ms
    while a run goes: no process chatprobe starts may carry a planted secret in it. The command
    the test typed is ignored (a secret the user puts on a command line is the user's choice).
    Sightings are kept by process id and the typed commands' ids left out when read, so a scan
    that runs between the start of a typed command and its id being registered counts nothing."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[str, list[str]]] = {}
        self.ignore: set[int] = {os.getpid()}
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or int(entry.name) in self.ignore:
                    continue
                with contextlib.suppress(OSError):
                    argv = Path(entry.path, "cmdline").read_bytes().decode("utf-8", "replace")
                    leaked = _leaks(argv)
                    if leaked:
                        self._seen[int(entry.name)] = (argv.replace("\0", " ")[:300], leaked)
            self.scans += 1

    @property
    def seen(self) -> dict[str, list[str]]:
        return {argv: leaked for pid, (argv, leaked) in self._seen.items() if pid not in self.ignore}

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_cli(
    argv: Sequence[str], env: dict[str, str], timeout: float = 120.0, watch: ArgvWatch | None = None
) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen([sys.executable, "-m", "chatprobe", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as child:
        if watch is not None:
            watch.ignore.add(child.pid)
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            raise AssertionError(f"chatprobe {argv[0]} did not finish in {timeout} s: {err[-2000:]}") from None
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


# --------------------------------------------------------------------------- conform


def test_conform_keeps_every_secret_out_of_every_output(echo: str, tmp_path: Path) -> None:
    """--api-key-env (Authorization), --header with ${VAR}, a literal credential-named --header,
    and a target URL with user:password: the server echoes each, nothing repeats one."""
    report = tmp_path / "report"
    with ArgvWatch() as watch:
        result = run_cli(
            ["conform", "--target", _with_userinfo(echo), "--api-key-env", "PLANTED_KEY", "--report-dir", str(report),
             "--timeout", "1", "--quiet", "-k", "basics or auth or errors",
             "--header", "X-Tenant-Token: ${PLANTED_HEADER}", "--header", f"X-Api-Key: {LITERAL_KEY}",
             "--header", "X-Org: acme"],
            _env(), watch=watch,
        )
    assert result.returncode == 1, result.stderr  # the echoing server fails checks
    files = assert_no_leak(report, result)
    assert {"findings.json", "findings.html", "junit.xml", "checks.csv"} <= {p.name for p in report.iterdir()}
    assert files >= 4 and not watch.seen and watch.scans > 0
    findings = (report / "findings.json").read_text(encoding="utf-8")
    # The reproducers reference the variables the secrets came from, never a value.
    assert "Bearer ${PLANTED_KEY}" in findings and "X-Tenant-Token: ${PLANTED_HEADER}" in findings
    assert "X-Api-Key: ${API_KEY}" in findings and "planted-user:${PASSWORD}@" in findings
    assert "X-Org: acme" in findings  # an ordinary header is kept
    assert "<redacted>" in findings  # the server's echoes were scrubbed, not dropped


def test_conform_with_a_profiles_own_auth_header(echo: str, tmp_path: Path) -> None:
    """The profile names the header that carries the key (no "key" in its name): the header's
    value is redacted by that name, and the key by its value wherever the server echoes it."""
    profile = tmp_path / "portal.yaml"
    profile.write_text(yaml.safe_dump({
        "extends": "openai", "dialect": "portal", "description": "a gateway with its own key header",
        "auth": {"header": "X-Portal", "scheme": None, "required": True},
    }), encoding="utf-8")  # fmt: skip
    report = tmp_path / "report"
    result = run_cli(
        ["conform", "--target", echo, "--profile", str(profile), "--api-key-env", "PLANTED_PROFILE_KEY",
         "--report-dir", str(report), "--timeout", "1", "--quiet", "-k", "basics or auth"],
        _env(),
    )
    assert result.returncode == 1, result.stderr
    assert_no_leak(report, result)
    document = json.loads((report / "findings.json").read_text(encoding="utf-8"))
    sent = [ex["request"]["headers"] for c in document["checks"] for ex in c["exchanges"] if "X-Portal" in ex["request"]["headers"]]
    assert sent and all(h["X-Portal"] == "<redacted>" for h in sent)
    assert "X-Portal: ${PLANTED_PROFILE_KEY}" in (report / "findings.json").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- probe, errors, --target-env


def test_probe_and_error_messages_never_echo_a_url_secret(echo: str, tmp_path: Path) -> None:
    secret_url = f"http://planted-user:{PASSWORD}@127.0.0.1:9/v1?api_key={QUERY_KEY}"
    # An unreachable target: the one-line error names the URL, redacted.
    result = run_cli(["probe", "--target", secret_url], _env())
    assert result.returncode == 2 and not _leaks(result.stdout + result.stderr)
    assert result.stderr.count("\n") == 1 and "<redacted>" in result.stderr, result.stderr
    # --target-env: the URL from the environment (nothing in `ps`), the same redaction.
    result = run_cli(["probe", "--target-env", "PLANTED_URL"], _env({"PLANTED_URL": secret_url}))
    assert result.returncode == 2 and not _leaks(result.stdout + result.stderr), result.stderr
    # A probe the server answers with every secret echoed back.
    result = run_cli(
        ["probe", "--target", _with_userinfo(echo) + f"/?api_key={QUERY_KEY}", "--api-key-env", "PLANTED_KEY", "--json"],
        _env(),
    )
    assert result.returncode == 1, result.stderr
    assert not _leaks(result.stdout + result.stderr), result.stdout
    assert "${PLANTED_KEY}" in json.loads(result.stdout)["reproducer"]


def test_report_rerenders_an_older_unredacted_run_without_its_secrets(tmp_path: Path) -> None:
    """`chatprobe report` of a findings.json an older chatprobe wrote with the key in it: the
    credential-named headers and URL secrets are redacted by name in every rendering."""
    run = tmp_path / "old"
    run.mkdir()
    exchange = {
        "dialect": "openai",
        "request": {"method": "POST", "url": f"http://u:{PASSWORD}@h/v1/chat/completions?api_key={QUERY_KEY}",
                    "headers": {"api-key": KEY, "Authorization": f"Bearer {PROFILE_KEY}"}, "body": {}},
        "response": {"status": 500, "headers": {"set-cookie": f"sid={LITERAL_KEY}"}, "body_excerpt": "",
                     "body_truncated": False, "bytes_received": 0, "events": 0},
        "transport_error": None, "transport_detail": "", "stale_connection_retry": False,
        "reproducer": f"curl -H 'Authorization: Bearer {PROFILE_KEY}' 'http://u:{PASSWORD}@h/'",
    }  # fmt: skip
    check = {"id": "suites/test_basics.py::test_x", "name": "test_x", "area": "basics", "verdict": "fail",
             "features": [], "reason": "", "duration_s": 0.1, "exchanges": [exchange],
             "findings": [{"rule": "http.status", "severity": "error", "message": "HTTP 500", "exchange": 0}]}
    document = findings_document([check], target=f"http://u:{PASSWORD}@h", dialect="openai", profile="openai",
                                 model=None, embedded=False, started_unix=0, duration_s=1, hypothesis_profile="dev")
    (run / "findings.json").write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli(["report", str(run), "--out", str(out)], _env())
    assert result.returncode == 0, result.stderr
    assert_no_leak(out, result, (KEY, PASSWORD, QUERY_KEY, LITERAL_KEY, PROFILE_KEY))


# --------------------------------------------------------------------------- audit


def _targets(tmp_path: Path, echo: str) -> Path:
    path = tmp_path / "TARGETS.yaml"
    path.write_text(yaml.safe_dump({"targets": [{
        "name": "echo", "url": _with_userinfo(echo) , "dialect": "openai", "api_key_env": "PLANTED_KEY",
        "headers": {"X-Tenant-Token": "${PLANTED_HEADER}", "X-Org": "acme"},
    }]}), encoding="utf-8")  # fmt: skip
    return path


@pytest.mark.slow
def test_audit_keeps_every_secret_out_of_every_output(echo: str, tmp_path: Path) -> None:
    """A targets file's api_key_env, ${VAR} header and URL password: the matrix, each target's
    conformance report, the load probe and every child's command line stay clean."""
    report = tmp_path / "audit"
    with ArgvWatch() as watch:
        result = run_cli(
            ["audit", str(_targets(tmp_path, echo)), "--report-dir", str(report), "--timeout", "1", "--load-probe"],
            _env(), timeout=600, watch=watch,
        )
    assert result.returncode == 0, result.stderr
    files = assert_no_leak(report, result)
    names = {p.name for p in report.rglob("*")}
    assert {"audit.json", "audit.html", "audit.md", "findings.json", "junit.xml", "summary.json", "records.jsonl"} <= names
    assert files > 8 and not watch.seen, watch.seen
    findings = next(report.rglob("findings.json")).read_text(encoding="utf-8")
    assert "X-Tenant-Token: ${PLANTED_HEADER}" in findings and "X-Org: acme" in findings


# --------------------------------------------------------------------------- load


def test_load_keeps_every_secret_out_of_its_files_and_argv(echo: str, tmp_path: Path) -> None:
    """The key reaches the generator through its environment, the URL whole through its
    environment too: its settings file, records, summary, report and command line stay clean."""
    report = tmp_path / "load"
    with ArgvWatch() as watch:
        result = run_cli(
            ["load", "--target", _with_userinfo(echo) + f"/?api_key={QUERY_KEY}", "--api-key-env", "PLANTED_KEY",
             "--users", "2", "--duration", "2", "--max-tokens", "4", "--report-dir", str(report), "--no-progress"],
            _env(), timeout=120, watch=watch,
        )
    assert (report / "summary.json").is_file(), result.stderr
    assert_no_leak(report, result)
    assert {"settings.json", "summary.json", "records.jsonl", "report.html"} <= {p.name for p in report.iterdir()}
    assert not watch.seen, watch.seen
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    assert summary["summary"]["requests"]["total"] > 0  # the requests went out (and were echoed)
    assert "<redacted>" in summary["settings"]["target"]


@pytest.mark.slow
def test_distributed_load_and_sweep_keep_every_secret_out(echo: str, tmp_path: Path) -> None:
    """Workers (--processes 2) get the settings and the key through their environment; a sweep's
    levels write the same files."""
    target = _with_userinfo(echo) + f"/?api_key={QUERY_KEY}"
    with ArgvWatch() as watch:
        load = run_cli(
            ["load", "--target", target, "--api-key-env", "PLANTED_KEY", "--users", "2", "--duration", "2",
             "--max-tokens", "4", "--processes", "2", "--report-dir", str(tmp_path / "load"), "--no-progress"],
            _env(), timeout=180, watch=watch,
        )
        sweep = run_cli(
            ["sweep", "--target", target, "--api-key-env", "PLANTED_KEY", "--slo", "ttft_p95_ms=500",
             "--max-tokens", "4", "--max", "2", "--budget", "20s", "--report-dir", str(tmp_path / "sweep")],
            _env(), timeout=300, watch=watch,
        )
    assert (tmp_path / "load" / "summary.json").is_file(), load.stderr
    assert {"sweep.json", "sweep.html", "summary.json", "records.jsonl"} <= {p.name for p in (tmp_path / "sweep").rglob("*")}
    assert_no_leak(tmp_path / "load", load)
    assert_no_leak(tmp_path / "sweep", sweep)
    assert not watch.seen, watch.seen


# --------------------------------------------------------------------------- the rule itself (in-process)


@pytest.fixture
def registry() -> Iterator[None]:
    redact.reset()
    yield
    redact.reset()


def test_names_that_carry_credentials(registry: None) -> None:
    secret = ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "x-api-key", "api-key", "x-goog-api-key",
              "X-Auth-Token", "x-amz-security-token", "Ocp-Apim-Subscription-Key", "apikey", "access_token", "key",
              "token", "sig", "client_secret", "password", "X-Amz-Credential"]  # fmt: skip
    plain = ["Content-Type", "X-Request-Id", "x-ratelimit-remaining-tokens", "OpenAI-Organization", "model",
             "api-version", "stream", "keep-alive", "www-authenticate", "X-Portal"]  # fmt: skip
    assert [n for n in secret if not redact.is_secret_name(n)] == []
    assert [n for n in plain if redact.is_secret_name(n)] == []
    redact.add_secret_header("X-Portal")  # a profile's auth header: secret by its declaration
    assert redact.is_secret_name("x-portal")


def test_scrub_by_value_and_by_structure(registry: None) -> None:
    redact.add_secret('sk-"odd"&<key>/1', "ODD_KEY")
    odd = 'sk-"odd"&<key>/1'
    for form in (odd, json.dumps(odd)[1:-1], quote(odd, safe=""), "sk-&quot;odd&quot;&amp;&lt;key&gt;/1"):
        assert redact.scrub(f"a {form} b") == "a <redacted> b", form
    assert redact.scrub("see http://u:p@h:1/x?token=abc&model=m") == "see http://<redacted>@h:1/x?token=<redacted>&model=m"
    assert redact.scrub("x.html?a=1&amp;api_key=zz") == "x.html?a=1&amp;api_key=<redacted>"
    assert redact.scrub("Authorization: Bearer abcdefgh12345") == "Authorization: Bearer <redacted>"
    short = "pass"  # under MIN_VALUE_LEN: never replaced in free text (verdicts say "pass")
    redact.add_secret(short)
    assert redact.scrub("verdict pass") == "verdict pass"
    document = {"headers": {"api-key": "v", "X-Org": "acme"}, "list": [f"{odd}"], "n": 1}
    assert redact.scrub_json(document) == {"headers": {"api-key": "<redacted>", "X-Org": "acme"}, "list": ["<redacted>"], "n": 1}


def test_reproducers_reference_variables(registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.setenv("MY_TENANT", HEADER_KEY)
    redact.secret_env("MY_KEY")
    tenant = redact.expand_env("t-${MY_TENANT}")
    redact.add_url(f"http://bob:{PASSWORD}@h:1/?api_key={QUERY_KEY}")
    line = redact.curl(
        "POST", f"http://bob:{PASSWORD}@h:1/v1?api_key={QUERY_KEY}",
        {"Authorization": f"Bearer {KEY}", "X-Tenant": tenant, "api-key": "unregistered-value", "X-Org": "it's"},
        json.dumps({"k": KEY}).encode(), stream=True,
    )  # fmt: skip
    assert not _leaks(line) and "unregistered-value" not in line
    assert '"http://bob:${PASSWORD}@h:1/v1?api_key=${API_KEY}"' in line
    assert '"Authorization: Bearer ${MY_KEY}"' in line and '"X-Tenant: t-${MY_TENANT}"' in line
    assert '"api-key: ${API_KEY}"' in line and "'X-Org: it'\"'\"'s'" in line
    # The shell expands it back into the request that was sent.
    env = {"MY_KEY": KEY, "MY_TENANT": HEADER_KEY, "PASSWORD": PASSWORD, "API_KEY": QUERY_KEY, "PATH": os.environ["PATH"]}
    echoed = subprocess.run(["sh", "-c", "printf '%s\\n' " + line.removeprefix("curl ")], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert f"Bearer {KEY}" in echoed and f"t-{HEADER_KEY}" in echoed and f"{PASSWORD}@h:1" in echoed


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "--target", f"http://planted-user:{PASSWORD}@[::1/v1?api_key={QUERY_KEY}"],  # unclosed bracket
        ["probe", "--target", f"http://planted-user:{PASSWORD}@127.0.0.1:99999/?api_key={QUERY_KEY}"],  # bad port
        ["conform", "--target", "http://127.0.0.1:9", "--header", f"X-Api-Key: {LITERAL_KEY}\r\nX-Evil: 1"],
        ["conform", "--target", "http://127.0.0.1:9", "--header", f"X-Portal {LITERAL_KEY}"],  # no colon
        ["load", "--target", f"ftp://planted-user:{PASSWORD}@h/?token={QUERY_KEY}"],
    ],
    ids=["unclosed-bracket", "bad-port", "crlf-header", "malformed-header", "not-http"],
)
def test_a_usage_error_never_echoes_a_secret(argv: list[str], tmp_path: Path) -> None:
    result = run_cli([*argv, "--report-dir", str(tmp_path)], _env())
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not _leaks(result.stdout + result.stderr, (PASSWORD, QUERY_KEY, LITERAL_KEY)), result.stderr


def test_unset_header_variable_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(["conform", "--target", "http://127.0.0.1:9", "--header", "X-Key: ${PLANTED_UNSET}",
                      "--report-dir", str(tmp_path)], _env())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["chatprobe conform: error: environment variable PLANTED_UNSET is not set or empty"]


def test_console_scrubs_and_restores(registry: None) -> None:
    buffer = io.StringIO()
    real = sys.stdout
    try:
        sys.stdout = buffer
        with redact.console():
            redact.add_secret(KEY)
            print(f"key={KEY} at http://u:{PASSWORD}@h")
        assert sys.stdout is buffer
    finally:
        sys.stdout = real
    assert buffer.getvalue() == "key=<redacted> at http://<redacted>@h\n"


def test_scrub_cost_is_small(registry: None) -> None:
    """The writers scrub whole reports: a few MB in well under a second with secrets registered."""
    for i in range(5):
        redact.add_secret(f"sk-planted-cost-{i:04d}-abcdef", f"K{i}")
    text = ("<tr><td>http://h/v1/chat/completions?model=m&amp;stream=true</td><td>Bearer-free text</td></tr>\n" * 40000)
    started = time.perf_counter()
    assert redact.scrub(text) == text
    assert time.perf_counter() - started < 1.0
