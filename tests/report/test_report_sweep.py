"""`chatprobe report` on a sweep: sweep.html and levels.csv from sweep.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from chatprobe.paths import specs_dir
from tests.load.conftest import load_env
from tests.report.report_run import assert_recreated, csv_rows

RENDERINGS = ["sweep.html", "levels.csv"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The smallest real sweep: the one-user baseline and one probe at 2 users (--max), 1 s each."""
    directory = tmp_path_factory.mktemp("sweep") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", "sweep", "--report-dir", str(directory), "--level-duration", "1",
         "--budget", "40s", "--max", "2", "--slo", "ttft_p95_ms=5000", "--max-tokens", "8",
         "--prompt-tokens", "16", "--server-ttft-ms", "5", "--server-itl-ms", "1", "--no-progress"],
        env=load_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield directory


def test_renderings_recreated(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    assert_recreated(capsys, copy, RENDERINGS)


def test_levels_csv_agrees_with_sweep_json(run_dir: Path) -> None:
    doc = json.loads((run_dir / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads((specs_dir() / "sweep.schema.json").read_text(encoding="utf-8")))
    header, *rows = csv_rows(run_dir / "levels.csv")
    assert len(rows) == len(doc["levels"]) == doc["run"]["levels"] >= 2
    col = {name: i for i, name in enumerate(header)}
    for row, level in zip(rows, doc["levels"], strict=True):
        assert row[col["phase"]] == level["phase"] and float(row[col["load"]]) == level["load"]
        assert row[col["verdict"]] == ("pass" if level["acceptable"] else "fail")
        assert float(row[col["ttft_p95_ms"]]) == level["latency_ms"]["ttft_ms"]["p95"]
        assert float(row[col["throughput_rps"]]) == level["throughput_rps"]
        assert float(row[col["goodput_rps"]]) == level["goodput_rps"]
        assert (run_dir / row[col["report_dir"]] / "summary.json").is_file()
