"""Issue 14, items 4 and 6: every user mistake is one line on stderr and exit 2, before anything
is sent, never a traceback and never a finding against a server; every plan key is honoured or
refused by name.

The table runs the real CLI in a subprocess (``python -m chatprobe``), one hostile input per
row, grouped by class: numbers (NaN, infinity, absurd sizes), URLs, headers, input files (FIFO,
device, directory, oversized), YAML (alias bomb, recursive alias, depth, duplicate keys), JSON
depth, report paths, plans, datasets, budgets. Nothing here reaches a server: each row fails
validation before one would be started or reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chatprobe import inputs
from chatprobe.cli import build_parser, main
from chatprobe.errors import UsageError

SECRET = "hunter2pass"
ENV = {
    "CHATPROBE_T14_CRLF": "a\r\nX-Injected: 1",
    "CHATPROBE_T14_KEY": "sk-t14\r\nX-Injected: 1",
}
TARGET_OK = "targets:\n  - name: a\n    url: http://127.0.0.1:9\n    dialect: openai\n"


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile files, made once."""
    d = tmp_path_factory.mktemp("hostile")
    os.mkfifo(d / "fifo")
    (d / "a-file").write_text("x")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "deep64.json").write_text("[" * 65 + "]" * 65)  # one past the cap, well within recursion
    (d / "deep.yaml").write_text("stages: " + "[" * 70 + "]" * 70 + "\n")
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    (d / "bomb.yaml").write_text(bomb)  # 9**9 nodes once expanded (a few hundred bytes of text)
    (d / "recursive.yaml").write_text("extends: openai\ndescription: &d [*d]\n")
    with open(d / "huge.yaml", "wb") as f:  # 11 MiB, sparse: its size is what is refused
        f.truncate(11 << 20)
    (d / "not-utf8.json").write_bytes(b'{"a": "\xff"}')
    (d / "plan-unknown.yaml").write_text("colour: blue\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-dup.yaml").write_text("max_tokens: 8\nmax_tokens: 9\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-dialect.yaml").write_text("dialect: klingon\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-target.yaml").write_text("target: 'http://[::1'\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-users.yaml").write_text("stages:\n  - {duration: 1, users: 1000000000}\n")
    (d / "plan-inf.yaml").write_text("stages:\n  - {duration: .inf, users: 1}\n")
    (d / "plan-arrivals.yaml").write_text("arrivals: constant\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-nostages.yaml").write_text("max_tokens: 8\n")
    (d / "plan-stages.yaml").write_text("max_tokens: 8\nstages:\n  - {duration: 1, users: 1}\n")
    (d / "plan-warmup.yaml").write_text("warmup: 2\n")
    (d / "ds-broken.jsonl").write_text('{"prompt": "hi"}\n{"prompt": 3}\n' + "not json\n" * 100_000)
    (d / "ds-empty.jsonl").write_text("\n\n")
    (d / "targets-ok.yaml").write_text(TARGET_OK)
    (d / "targets-dup.yaml").write_text(TARGET_OK + "    dialect: openai\n")
    (d / "targets-crlf.yaml").write_text(TARGET_OK + "    headers: {X-A: '${CHATPROBE_T14_CRLF}'}\n")
    (d / "targets-url.yaml").write_text(TARGET_OK.replace("http://127.0.0.1:9", "'http://[::1'"))
    (d / "run-deep").mkdir()
    (d / "run-deep" / "findings.json").write_text("[" * 300 + "]" * 300)
    return d


S = "--slo=ttft_p95_ms=500"  # sweep refuses to start without a gate
# (id, argv with {h} for the hostile directory, a phrase of the one line)
CASES: list[tuple[str, list[str], str]] = [
    # numbers: NaN, infinity, out of range, absurd sizes
    ("timeout-nan", ["probe", "--timeout", "nan"], "--timeout"),
    ("timeout-inf", ["conform", "--timeout", "inf"], "--timeout"),
    ("timeout-negative", ["load", "--timeout", "-1"], "--timeout"),
    ("max-duration-inf", ["conform", "--max-duration", "inf"], "--max-duration"),
    ("max-tokens-huge", ["probe", "--max-tokens", "100000000000"], "--max-tokens"),
    ("users-1e9", ["load", "--users", "1e9"], "--users"),
    ("users-huge", ["load", "--users", "1000000000"], "--users"),
    ("rate-inf", ["load", "--rate", "inf"], "--rate"),
    ("prompt-tokens-1e8", ["load", "--prompt-tokens", "100000000"], "--prompt-tokens"),
    ("server-ttft-nan", ["load", "--server-ttft-ms", "nan"], "--server-ttft-ms"),
    ("seed-negative", ["load", "--seed", "-1"], "--seed"),
    ("frame-bytes-0", ["lint-stream", "--max-frame-bytes", "0", "{h}/a-file"], "--max-frame-bytes"),
    ("sweep-min-nan", ["sweep", S, "--min", "nan"], "--min"),
    ("sweep-precision-1", ["sweep", S, "--precision", "1"], "--precision"),
    ("sweep-level-inf", ["sweep", S, "--level-duration", "inf"], "--level-duration"),
    ("sweep-budget-huge", ["sweep", S, "--budget", "99999999h"], "at most"),
    ("sweep-budget-tiny", ["sweep", S, "--budget", "1s"], "cannot hold"),
    ("audit-workers-0", ["audit", "{h}/targets-ok.yaml", "--workers", "0"], "--workers"),
    ("audit-timeout-nan", ["audit", "{h}/targets-ok.yaml", "--target-timeout", "nan"], "--target-timeout"),
    # URLs and HOST:PORT
    ("url-no-host", ["probe", "--target", "http://"], "no host"),
    ("url-ipv6-unclosed", ["probe", "--target", "http://[::1"], "IPv6"),
    ("url-userinfo-not-echoed", ["conform", "--target", f"http://me:{SECRET}@[::1"], "IPv6"),
    ("url-port", ["load", "--target", "http://127.0.0.1:99999"], "port"),
    ("url-scheme", ["sweep", S, "--target", "ftp://example"], "http(s)"),
    ("url-space", ["probe", "--target", "http://a b"], "white space"),
    ("worker-ipv6", ["load", "--worker", "[::1"], "IPv6"),
    ("master-bind-port", ["load", "--master-bind", "127.0.0.1:0"], "port"),
    # headers, keys, model ids (one line each: nothing can be injected)
    ("header-crlf", ["conform", "--header", "X: a\r\nY: b"], "CR"),
    ("header-env-crlf", ["conform", "--header", "X-A: ${CHATPROBE_T14_CRLF}"], "CR"),
    ("header-name", ["conform", "--header", "Bad Name: v"], "header name"),
    ("api-key-crlf", ["probe", "--api-key-env", "CHATPROBE_T14_KEY"], "control character"),
    ("model-crlf", ["probe", "--dialect", "elastic-chat", "--model", "a\r\nb"], "model"),
    ("audit-header-crlf", ["audit", "{h}/targets-crlf.yaml"], "CR"),
    ("audit-url", ["audit", "{h}/targets-url.yaml"], "IPv6"),
    # input files: FIFO, device, directory, oversized, not UTF-8
    ("profile-fifo", ["probe", "--profile", "{h}/fifo"], "FIFO"),
    ("profile-dir", ["conform", "--profile", "{h}"], "directory"),
    ("validate-dev-zero", ["validate", "--kind", "request", "/dev/zero"], "device"),
    ("lint-fifo", ["lint-stream", "{h}/fifo"], "FIFO"),
    ("lint-request-dev-zero", ["lint-stream", "--request", "/dev/zero", "{h}/a-file"], "device"),
    ("plan-huge", ["load", "--plan", "{h}/huge.yaml"], "over the limit"),
    ("targets-fifo", ["audit", "{h}/fifo"], "FIFO"),
    ("targets-huge", ["audit", "{h}/huge.yaml"], "over the limit"),
    ("dataset-dev-zero", ["load", "--dataset", "/dev/zero"], "device"),
    ("validate-not-utf8", ["validate", "--kind", "request", "{h}/not-utf8.json"], "UTF-8"),
    # JSON depth
    ("validate-deep", ["validate", "--kind", "request", "{h}/deep.json"], "nested deeper"),
    ("validate-depth-cap", ["validate", "--kind", "request", "{h}/deep64.json"], "nested deeper"),
    ("lint-request-deep", ["lint-stream", "--request", "{h}/deep.json", "{h}/a-file"], "nested deeper"),
    ("report-deep", ["report", "{h}/run-deep"], "nested deeper"),
    # YAML: alias bomb, recursive alias, depth, duplicate keys (targets, plans, profiles)
    ("plan-alias-bomb", ["load", "--plan", "{h}/bomb.yaml"], "expands to more than"),
    ("profile-alias-bomb", ["conform", "--profile", "{h}/bomb.yaml"], "expands to more than"),
    ("targets-alias-bomb", ["audit", "{h}/bomb.yaml"], "expands to more than"),
    ("profile-recursive-alias", ["probe", "--profile", "{h}/recursive.yaml"], "recursive alias"),
    ("plan-deep", ["load", "--plan", "{h}/deep.yaml"], "nested deeper"),
    ("plan-duplicate-key", ["load", "--plan", "{h}/plan-dup.yaml"], "duplicate key 'max_tokens'"),
    ("targets-duplicate-key", ["audit", "{h}/targets-dup.yaml"], "duplicate key 'dialect'"),
    # where reports go
    ("conform-report-dir-file", ["conform", "--report-dir", "{h}/a-file"], "not a directory"),
    ("load-report-dir-file", ["load", "--report-dir", "{h}/a-file"], "report directory"),
    ("sweep-report-dir-file", ["sweep", S, "--report-dir", "{h}/a-file"], "not a directory"),
    ("audit-report-dir-file", ["audit", "{h}/targets-ok.yaml", "--report-dir", "{h}/a-file"], "not a directory"),
    ("junit-xml-dir", ["conform", "--junit-xml", "{h}"], "is a directory"),
    ("conform-k", ["conform", "-k", "(("], "-k"),
    # plans: every key honoured or refused by name
    ("plan-unknown-key", ["load", "--plan", "{h}/plan-unknown.yaml"], "'colour'"),
    ("plan-dialect", ["load", "--plan", "{h}/plan-dialect.yaml"], "klingon"),
    ("plan-target", ["load", "--plan", "{h}/plan-target.yaml"], "target"),
    ("plan-users", ["load", "--plan", "{h}/plan-users.yaml"], "users"),
    ("plan-duration-inf", ["load", "--plan", "{h}/plan-inf.yaml"], "duration"),
    ("plan-arrivals-closed", ["load", "--plan", "{h}/plan-arrivals.yaml"], "arrivals"),
    ("plan-no-stages", ["load", "--plan", "{h}/plan-nostages.yaml"], "stages"),
    ("sweep-plan-stages", ["sweep", S, "--plan", "{h}/plan-stages.yaml"], "stages"),
    ("sweep-plan-warmup", ["sweep", S, "--plan", "{h}/plan-warmup.yaml"], "warmup"),
    # datasets: read and checked once, up front (not 100,000 traceback lines from the generator)
    ("dataset-broken", ["load", "--dataset", "{h}/ds-broken.jsonl"], "ds-broken.jsonl:2"),
    ("dataset-empty", ["sweep", S, "--dataset", "{h}/ds-empty.jsonl"], "no conversation"),
]


def run_cli(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", *argv], capture_output=True, timeout=30, cwd=cwd,
        env={**os.environ, **ENV}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, time.monotonic() - started


# One row per class runs by default; the whole table in the slow tier (tox -e slow): each row is a
# Python start-up (~0.7 s of CPU), and the loaders' own tests below cover the rest in process.
DEFAULT_TIER = {
    "timeout-nan", "users-1e9", "prompt-tokens-1e8", "frame-bytes-0", "sweep-budget-tiny",
    "url-ipv6-unclosed", "url-userinfo-not-echoed", "header-crlf", "api-key-crlf", "lint-fifo",
    "validate-dev-zero", "targets-huge", "validate-deep", "plan-alias-bomb", "conform-report-dir-file",
    "plan-target", "sweep-plan-stages", "dataset-broken",
}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [pytest.param(a, p, id=i, marks=() if i in DEFAULT_TIER else pytest.mark.slow) for i, a, p in CASES],
)
def test_user_mistake_is_one_line_exit_2(h: Path, tmp_path: Path, argv: list[str], phrase: str) -> None:
    proc, elapsed = run_cli([a.replace("{h}", str(h)) for a in argv], tmp_path)
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert len(lines) == 1, err[-2000:]
    assert phrase in lines[0], lines[0]
    assert SECRET not in err and "X-Injected" not in err
    assert elapsed < 10, elapsed
    assert not any(p.name.startswith("chatprobe-") for p in tmp_path.iterdir())  # no report of a run


def test_every_command_is_in_the_table() -> None:
    from chatprobe.cli import COMMANDS

    covered = {argv[0] for _, argv, _ in CASES}
    assert covered >= {name for name, _, _ in COMMANDS} - {"serve"}  # serve: the server's own flags
    assert {i for i, _, _ in CASES} >= DEFAULT_TIER


# --------------------------------------------------------------------------- in process
def _load_args(*argv: str) -> tuple[object, object]:
    from chatprobe.loadrun import apply_plan, settings_from_args

    args = build_parser().parse_args(["load", *argv])
    apply_plan(args)
    return args, settings_from_args(args, args.target or "http://127.0.0.1:1")


def test_plan_target_and_dialect_are_honoured(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("target: http://127.0.0.1:7/base/\ndialect: elastic-chat\nignore_eos: false\n"
                    "model: m-1\nstages:\n  - {duration: 1, users: 2}\n")
    args, s = _load_args("--plan", str(plan))
    assert args.target == "http://127.0.0.1:7/base"  # type: ignore[attr-defined]
    assert (s.target, s.dialect, s.model, s.ignore_eos, s.users) == (  # type: ignore[attr-defined]
        "http://127.0.0.1:7/base", "elastic-chat", "m-1", False, 2)
    # flags win over the plan
    args, s = _load_args("--plan", str(plan), "--target", "http://127.0.0.1:8", "--dialect", "openai")
    assert (s.target, s.dialect) == ("http://127.0.0.1:8", "openai")  # type: ignore[attr-defined]


def test_every_plan_key_is_honoured(tmp_path: Path) -> None:
    """Each key of specs/plan.schema.json reaches the settings (or the stages / mode / SLOs)."""
    import json

    from chatprobe.paths import specs_dir

    keys = set(json.loads((specs_dir() / "plan.schema.json").read_text())["properties"])
    from tests.tiny_tokenizers import word_level_file

    (tmp_path / "d.jsonl").write_text('{"prompt": "hi"}\n')
    word_level_file(tmp_path / "tok.json")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "target: http://127.0.0.1:7\ndialect: atoma\nmodel: m\nprompt_tokens: 5\nmax_tokens: 6\n"
        "include_usage: false\nstream: false\nignore_eos: true\ndataset: d.jsonl\ntimeout: 7\nwarmup: 0.5\n"
        "max_in_flight: 9\narrivals: constant\nslo: {ttft_p95_ms: 100}\nstages:\n  - {duration: 2, rate: 3}\n"
        "tokenizer: tok.json\ndataset_format: jsonl\ndataset_prompt_column: q\ndataset_min_tokens: 1\n"
        "dataset_max_tokens: 50\ndataset_limit: 3\nprefix_groups: 2\nprefix_tokens: 4\n"
        "turns: 3\nthink_time: uniform:1:2\n"
    )
    _, s = _load_args("--plan", str(plan))
    got = {
        "target": s.target == "http://127.0.0.1:7", "dialect": s.dialect == "atoma", "model": s.model == "m",  # type: ignore[attr-defined]
        "prompt_tokens": s.prompt_tokens == 5, "max_tokens": s.max_tokens == 6,  # type: ignore[attr-defined]
        "include_usage": s.include_usage is False, "stream": s.stream is False,  # type: ignore[attr-defined]
        "ignore_eos": s.ignore_eos is True, "dataset": s.dataset == str(tmp_path / "d.jsonl"),  # type: ignore[attr-defined]
        "timeout": s.timeout_s == 7, "warmup": s.warmup_s == 0.5, "max_in_flight": s.max_in_flight == 9,  # type: ignore[attr-defined]
        "arrivals": s.mode == "constant", "slo": s.slos == ("ttft_p95_ms=100",),  # type: ignore[attr-defined]
        "stages": s.duration_s == 2 and s.rate == 3,  # type: ignore[attr-defined]
        "tokenizer": s.tokenizer == str(tmp_path / "tok.json"), "dataset_format": s.dataset_format == "jsonl",  # type: ignore[attr-defined]
        "dataset_prompt_column": s.dataset_prompt_column == "q", "dataset_min_tokens": s.dataset_min_tokens == 1,  # type: ignore[attr-defined]
        "dataset_max_tokens": s.dataset_max_tokens == 50, "dataset_limit": s.dataset_limit == 3,  # type: ignore[attr-defined]
        "prefix_groups": s.prefix_groups == 2, "prefix_tokens": s.prefix_tokens == 4,  # type: ignore[attr-defined]
        "turns": s.turns == 3, "think_time": s.think_time == "uniform:1:2",  # type: ignore[attr-defined]
    }  # fmt: skip
    assert set(got) == keys, "a plan key without a test of its effect"
    assert all(got.values()), got


def test_an_internal_error_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatprobe.commands import validate

    def broken(args: object) -> int:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(validate, "run", broken)
    monkeypatch.delenv("CHATPROBE_DEBUG", raising=False)
    assert main(["validate", "--kind", "request", "-"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: a bug over two lines" in err[0], err


# --------------------------------------------------------------------------- the loaders
@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: &x [*x]\n", "recursive alias"),
        ("a: " + "[" * 65 + "]" * 65 + "\n", "nested deeper than 64"),
        ("a: &a [1, 2]\nb: &b [*a, *a]\n" + "".join(f"c{i}: &c{i} [*{'b' if i == 0 else f'c{i - 1}'}] \n" for i in range(70)),
         "nested deeper than 64"),
        ("a: [1\n", "not valid YAML"),
        ("--- 1\n--- 2\n", "not valid YAML"),
    ],
)
def test_yaml_loader_refuses(text: str, phrase: str) -> None:
    with pytest.raises(UsageError, match=phrase):
        inputs.parse_yaml(text, "x.yaml")


def test_yaml_loader_keeps_aliases_and_lines() -> None:
    doc = inputs.parse_yaml("base: &h {X-A: '1'}\nt: [{headers: *h}, {headers: *h}]\n", "x.yaml")
    assert doc.data["t"][0]["headers"] == {"X-A": "1"}
    with pytest.raises(inputs.YamlInputError) as info:
        inputs.parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\n", "x.yaml")
    assert info.value.line == 4 and str(info.value).startswith("x.yaml:4: ")


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (inputs.finite_float(0, 10, lo_open=True), ["0.5", "10", "1e1"], ["0", "nan", "inf", "-inf", "1e400", "x", "10.01"]),
        (inputs.bounded_int(1, 5), ["1", "5", " 3"], ["0", "6", "1e3", "2.0", "nan", "9" * 50]),
    ],
)
def test_number_types(parse: Callable[[str], object], good: list[str], bad: list[str]) -> None:
    import argparse

    for text in good:
        parse(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize(
    "url",
    ["http://", "http://:80", "http://[::1", "http://[::1]x:80", "http://[zz]:1", "http://h:0", "http://h:65536",
     "http://h:port", "ftp://h", "h:80", "http://a..b", "http://h/#frag", "http://a b", "http://h\r\n"],
)  # fmt: skip
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        inputs.parse_url(url)


def test_good_urls_and_userinfo_never_shown() -> None:
    for url in ["http://127.0.0.1:8000/", "https://api.example.com/v1", "http://[::1]:8000", "http://bücher.example"]:
        assert inputs.parse_url(url) == url.rstrip("/")
    with pytest.raises(UsageError) as info:
        inputs.parse_url(f"http://user:{SECRET}@host:99999")
    assert SECRET not in str(info.value) and "user" not in str(info.value)


def test_lint_stream_frame_over_the_limit_before_any_event_is_a_finding(tmp_path: Path) -> None:
    """Once an internal assertion (the decoder stopped before the dialect was known): the stream's
    fault is a finding, exit 1, not a crash."""
    import json

    capture = tmp_path / "one-frame.sse"
    capture.write_text("data: " + "x" * 5000)
    proc, _ = run_cli(["lint-stream", "--max-frame-bytes", "1024", str(capture)], tmp_path)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr, proc.stderr
    assert [f["rule"] for f in json.loads(proc.stdout)["findings"]] == ["sse.frame_too_large"]
