"""Re-render a run's JSON (`report DIR`), or compare two runs (`report diff OLD NEW`).

`chatprobe report DIR`: HTML, JUnit XML, Markdown and CSV, from the report
directory alone. DIR is a report directory of `chatprobe conform`
(findings.json), `load` (summary.json + records.jsonl), `sweep` (sweep.json) or
`audit` (audit.json + targets/*/findings.json); the run type is the one JSON file
present. The JSON is validated against its schema in specs/ first, then rendered
by the same renderers the run used. Exit 0 when everything asked for was written,
2 when DIR holds no valid run JSON or a format does not exist for that run type.

`chatprobe report diff OLD NEW`: what changed between two conform runs or two
audits (each a report directory or its findings.json / audit.json): new failures,
fixes, failures whose evidence changed, acceptances newly accepted, stale or
expired. --format text (default), markdown (a pull-request comment) or json
(specs/diff.schema.json), on stdout. Exit 1 on a regression (a check that fails
now and did not before; for audits as `audit --baseline` judges), 0 otherwise,
2 when OLD or NEW is no valid run JSON or they are runs of different kinds.
(A directory named `diff` is rendered as `chatprobe report ./diff`.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.paths import specs_dir

if TYPE_CHECKING:
    from chatprobe.metrics import RequestRecord

FORMATS = ("html", "junit", "md", "csv")
DIFF_FORMATS = ("text", "markdown", "json")


@dataclass(frozen=True)
class RunType:
    name: str  # the command that writes it
    json_file: str
    schema: str  # under specs/
    formats: tuple[str, ...]  # what it renders to, in FORMATS order


RUN_TYPES = (
    RunType("conform", "findings.json", "findings.schema.json", ("html", "junit", "csv")),
    RunType("load", "summary.json", "summary.schema.json", ("html", "csv")),
    RunType("sweep", "sweep.json", "sweep.schema.json", ("html", "csv")),
    RunType("audit", "audit.json", "audit.schema.json", ("html", "md", "csv")),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DIR | diff OLD NEW", help="a run's report directory; or diff and two runs")
    parser.add_argument(
        "--format", dest="formats", metavar="LIST",
        help=f"comma-separated, of {','.join(FORMATS)} (default: every format the run type has); "
        f"with diff: one of {', '.join(DIFF_FORMATS)} (default text)",
    )
    parser.add_argument("--out", metavar="DIR", help="write the renderings there (default: DIR itself; not with diff)")


def detect(directory: Path) -> RunType:
    """The run type of ``directory``: exactly one run JSON must be in it."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    present = [t for t in RUN_TYPES if (directory / t.json_file).is_file()]
    names = ", ".join(t.json_file for t in RUN_TYPES)
    if not present:
        raise UsageError(f"{directory} holds no run JSON (one of {names})")
    if len(present) > 1:
        found = ", ".join(t.json_file for t in present)
        raise UsageError(f"{directory} holds several run JSONs ({found}): cannot tell which run to render")
    return present[0]


def load_document(path: Path, schema_file: str) -> dict[str, Any]:
    """Read ``path`` and validate it against ``specs/<schema_file>``; UsageError naming the file
    and the first problem otherwise."""
    # a regular file, bounded in size and depth (chatprobe.inputs)
    document = inputs.load_json(path, "run JSON", inputs.MAX_RUN_JSON_BYTES, inputs.MAX_RUN_JSON_NESTING)
    import jsonschema
    import jsonschema.exceptions

    schema = json.loads((specs_dir() / schema_file).read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 160 else error.message[:159] + "…"
        raise UsageError(f"{path}: does not match specs/{schema_file} at {where}: {message}")
    if not isinstance(document, dict):  # every run schema demands an object; this is for mypy
        raise UsageError(f"{path}: not a JSON object")
    from chatprobe import redact

    # A run written by an older chatprobe may hold a credential-named header's value: redacted here.
    scrubbed: dict[str, Any] = redact.scrub_json(document)
    return scrubbed


def parse_formats(text: str | None, run_type: RunType) -> tuple[str, ...]:
    if text is None:
        return run_type.formats
    asked = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in asked if f not in FORMATS]
    if unknown or not asked:
        raise UsageError(f"--format wants a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    missing = [f for f in asked if f not in run_type.formats]
    if missing:
        raise UsageError(
            f"a {run_type.name} run has no {', '.join(missing)} rendering (it has {', '.join(run_type.formats)})"
        )
    return tuple(f for f in FORMATS if f in asked)


# Each renderer: (document, source directory, output directory) -> paths written.
Renderer = Callable[[dict[str, Any], Path, Path], list[Path]]


def _write(path: Path, text: str, newline: str | None = None) -> Path:
    from chatprobe.reports.files import write_text  # whole or not at all, secrets scrubbed

    return write_text(path, text, newline=newline)


def _conform(formats: tuple[str, ...], explicit: bool) -> Renderer:
    def render(doc: dict[str, Any], source: Path, out: Path) -> list[Path]:
        from chatprobe.reports.conform import HTML_FILE, render_html
        from chatprobe.reports.csv import write_checks
        from chatprobe.reports.junit import JUNIT_FILE, write_junit

        written = []
        if "html" in formats:
            written.append(_write(out / HTML_FILE, render_html(doc)))
        if "junit" in formats:
            written.append(write_junit(doc, out / JUNIT_FILE))
        if "csv" in formats:
            written.append(write_checks(doc, out))
        return written

    return render


def _read_records(path: Path) -> list[RequestRecord]:
    from chatprobe.reports.load import read_records  # the one reader of records.jsonl

    try:
        return read_records(path)
    except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"{path}: a broken record: {exc}") from None


def _load(formats: tuple[str, ...], explicit: bool) -> Renderer:
    def render(doc: dict[str, Any], source: Path, out: Path) -> list[Path]:
        from chatprobe.reports.csv import RECORDS_CSV, render_records
        from chatprobe.reports.load import render as render_html

        records_file = source / doc["run"].get("records_file", "records.jsonl")
        records = _read_records(records_file) if records_file.is_file() else None
        written = []
        if "html" in formats:
            # Rendered here rather than by write_report, which reads the records
            # next to its output: --out may point elsewhere.
            written.append(_write(out / "report.html", render_html(doc, records)))
        if "csv" in formats:
            if records is None and not explicit:
                sys.stderr.write(f"chatprobe report: no records.csv: {records_file} not found\n")
                return written
            if records is None:
                raise UsageError(f"{records_file} not found: records.csv is made from it")
            written.append(_write(out / RECORDS_CSV, render_records(doc, records), newline=""))
        return written

    return render


def _sweep(formats: tuple[str, ...], explicit: bool) -> Renderer:
    def render(doc: dict[str, Any], source: Path, out: Path) -> list[Path]:
        from chatprobe.reports.csv import write_levels
        from chatprobe.reports.sweep import write_report

        written = []
        if "html" in formats:
            written.append(write_report(doc, out / "sweep.html"))
        if "csv" in formats:
            written.append(write_levels(doc, out))
        return written

    return render


def _audit(formats: tuple[str, ...], explicit: bool) -> Renderer:
    def render(doc: dict[str, Any], source: Path, out: Path) -> list[Path]:
        from chatprobe.reports.audit import HTML_FILE, MARKDOWN_FILE, render_html, render_markdown
        from chatprobe.reports.csv import write_matrix

        written = []
        if "html" in formats:
            written.append(_write(out / HTML_FILE, render_html(doc, _target_findings(doc, source))))
        if "md" in formats:
            written.append(_write(out / MARKDOWN_FILE, render_markdown(doc)))
        if "csv" in formats:
            written.append(write_matrix(doc, out))
        return written

    return render


def _target_findings(doc: Mapping[str, Any], source: Path) -> dict[str, Mapping[str, Any]]:
    """Each audited target's findings.json (the evidence of audit.html), validated as well;
    a missing one is left out, as the audit's own writer does."""
    out: dict[str, Mapping[str, Any]] = {}
    for target in doc["targets"]:
        if target.get("report"):
            path = source / target["report"]
            if path.is_file():
                out[target["name"]] = load_document(path, "findings.schema.json")
    return out


# (formats, whether the user chose them) -> renderer
_RENDERERS: dict[str, Callable[[tuple[str, ...], bool], Renderer]] = {
    "conform": _conform, "load": _load, "sweep": _sweep, "audit": _audit,
}


def render(directory: Path, formats: str | None = None, out: Path | None = None) -> list[Path]:
    """Validate ``directory``'s run JSON and write its renderings into ``out`` (default: the
    directory); returns the paths written."""
    run_type = detect(directory)
    chosen = parse_formats(formats, run_type)
    document = load_document(directory / run_type.json_file, run_type.schema)
    target = out or directory
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {target}: {exc.strerror or exc}") from None
    try:
        return _RENDERERS[run_type.name](chosen, formats is not None)(document, directory, target)
    except OSError as exc:
        raise UsageError(f"cannot write into {target}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    if args.paths[0] == "diff" and len(args.paths) != 1:
        if len(args.paths) != 3:
            raise UsageError("report diff takes two runs: OLD NEW (report directories, or their findings.json / audit.json)")
        if args.out:
            raise UsageError("report diff writes to stdout: --out is for re-rendering a run")
        return diff(Path(args.paths[1]), Path(args.paths[2]), args.formats)
    if len(args.paths) != 1:
        raise UsageError("report takes one run's directory (or: report diff OLD NEW)")
    directory = Path(args.paths[0])
    out = Path(args.out) if args.out else None
    for path in render(directory, args.formats, out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


# --------------------------------------------------------------------------- diff

DIFF_RUN_TYPES = tuple(t for t in RUN_TYPES if t.name in ("conform", "audit"))


def load_run(path: Path, which: str) -> tuple[RunType, dict[str, Any]]:
    """A conform or audit run for diff: a report directory, or its findings.json / audit.json."""
    if path.is_dir():
        present = [t for t in DIFF_RUN_TYPES if (path / t.json_file).is_file()]
        if len(present) != 1:
            names = " or ".join(t.json_file for t in DIFF_RUN_TYPES)
            raise UsageError(f"{which} {path}: {'holds no' if not present else 'holds more than one'} run to compare ({names})")
        run_type, file = present[0], path / present[0].json_file
    else:
        matching = [t for t in DIFF_RUN_TYPES if t.json_file == path.name]
        if not path.exists():
            raise UsageError(f"{which} {path}: no such file or directory")
        if not matching:
            raise UsageError(f"{which} {path}: report diff compares conform runs (findings.json) or audits (audit.json)")
        run_type, file = matching[0], path
    return run_type, load_document(file, run_type.schema)


def diff(old: Path, new: Path, fmt: str | None) -> int:
    from chatprobe.reports.diff import render as render_diff
    from chatprobe.rundiff import diff as diff_runs

    fmt = {"md": "markdown"}.get(fmt or "text", fmt or "text")
    if fmt not in DIFF_FORMATS:
        raise UsageError(f"report diff --format wants one of {', '.join(DIFF_FORMATS)}; got {fmt!r}")
    old_type, old_doc = load_run(old, "OLD")
    new_type, new_doc = load_run(new, "NEW")
    if old_type != new_type:
        raise UsageError(f"OLD is a {old_type.name} run and NEW a {new_type.name} run: nothing to compare")
    document = diff_runs(old_doc, new_doc, new_type.name, str(old), str(new))
    sys.stdout.write(render_diff(document, fmt))
    code: int = document["exit_code"]
    return code
