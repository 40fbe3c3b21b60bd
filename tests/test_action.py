"""The GitHub Actions composite action (action.yml at the repository's top, issue 18 item 5).

Its structure, read with yaml: a composite action whose every input is declared and used, whose
inputs reach its scripts through the environment only (never spliced into a script), whose
scripts are valid bash. Then its conform step's script runs here as a runner would run it
(GITHUB_ACTIONS, RUNNER_TEMP, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY set), against the embedded
reference server, with extra-args that need shell-like splitting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ACTION = REPO / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _action() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    return document


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _action()["runs"]["steps"]
    return steps


def test_a_composite_action_with_its_metadata() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert action["name"] and action["description"]
    for name, spec in action["inputs"].items():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name), name
        assert spec["description"] and "default" in spec and spec.get("required") is False, name
    for step in _steps():
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step["shell"] == "bash", step  # a composite step must name its shell
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step
    ids = {step.get("id") for step in _steps()}
    for name, output in action["outputs"].items():
        referenced = re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", output["value"])
        assert referenced and all(step in ids for step, _ in referenced), name


def test_every_input_is_declared_and_used() -> None:
    action = _action()
    text = ACTION.read_text(encoding="utf-8")
    expressions = [e for line in text.splitlines() if not line.lstrip().startswith("#") for e in EXPRESSION.findall(line)]
    used = {name for e in expressions for name in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", e)}
    assert used == set(action["inputs"]), (used, set(action["inputs"]))


def test_inputs_reach_the_scripts_through_the_environment_only() -> None:
    """No ``${{ }}`` inside a script: a value with a quote or `$(...)` must stay data."""
    for step in _steps():
        if "run" in step:
            assert "${{" not in step["run"], step["name"]
            subprocess.run(["bash", "-n", "-c", step["run"]], check=True, timeout=30)


def _step_env(step: dict[str, Any], inputs: dict[str, str]) -> dict[str, str]:
    """The step's ``env:`` as the runner evaluates it, for these inputs (defaults otherwise)."""
    declared = _action()["inputs"]

    def value(expression: str) -> str:
        match = re.fullmatch(r"inputs\.([\w-]+)", expression)
        assert match, f"an expression this test does not evaluate: {expression}"
        return inputs.get(match.group(1), str(declared[match.group(1)]["default"]))

    return {name: EXPRESSION.sub(lambda m: value(m.group(1)), str(raw)) for name, raw in step.get("env", {}).items()}


def test_the_conform_step_runs_as_on_a_runner(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "chatprobe").is_file():
        pytest.skip("chatprobe's console script is not installed beside this interpreter")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    (runner_temp / "chatprobe-venv").symlink_to(bindir.parent)  # what the install step made
    step = next(s for s in _steps() if s.get("id") == "conform")
    report_dir = tmp_path / "out" / "conform report"
    inputs = {
        "report-dir": str(report_dir),
        "extra-args": "--quiet --timeout 5 -k 'test_stream_response or test_non_stream_response' --header 'X-Org: acme corp'",
    }
    outputs, summary = tmp_path / "github_output", tmp_path / "summary.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATPROBE_", "GITHUB_", "INPUT_"))}
    env.update(_step_env(step, inputs))
    env.update(GITHUB_ACTIONS="true", RUNNER_TEMP=str(runner_temp), GITHUB_OUTPUT=str(outputs),
               GITHUB_STEP_SUMMARY=str(summary))  # fmt: skip
    done = subprocess.run(["bash", "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs.read_text() == f"report-dir={report_dir}\n"
    text = summary.read_text()
    assert text.startswith("### ✅ chatprobe conform: passed")
    assert ", 2 checks in " in text  # the quoted -k expression stayed one argument
    assert (report_dir / "junit.xml").is_file() and (report_dir / "findings.json").is_file()
    assert "::error" not in done.stdout


def test_an_unbalanced_quote_in_extra_args_fails_the_step(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    (runner_temp / "chatprobe-venv").symlink_to(bindir.parent)
    step = next(s for s in _steps() if s.get("id") == "conform")
    env = {**os.environ, **_step_env(step, {"extra-args": "-k 'unclosed"}), "RUNNER_TEMP": str(runner_temp),
           "GITHUB_OUTPUT": str(tmp_path / "out")}  # fmt: skip
    done = subprocess.run(["bash", "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "No closing quotation" in done.stderr
    assert not (tmp_path / "out").exists()  # it stopped before running chatprobe
