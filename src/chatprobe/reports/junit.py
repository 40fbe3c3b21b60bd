"""JUnit XML of a conformance run, rendered from its findings.json.

During ``chatprobe conform`` pytest's own junitxml plugin writes junit.xml
live; this renders the same structure from the JSON afterwards (``chatprobe
report``), so a CI job can regenerate it from an archived findings.json:
``testsuites "pytest tests"`` > ``testsuite "pytest"`` > one ``testcase``
per check (classname and name from the pytest node id), the
``chatprobe_verdict`` property on each, ``<failure>`` for fail and
``<skipped>`` for unsupported / n/a, as the chatprobe pytest plugin maps them.
What the JSON does not hold (the host name, file:line of a skip) is left out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["JUNIT_FILE", "render_junit", "write_junit"]

JUNIT_FILE = "junit.xml"
_SKIPPED = ("unsupported", "n/a")
# Characters XML 1.0 cannot carry at all; a server's bytes may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"#x{ord(m.group()):02X}", text)


def _names(node_id: str) -> tuple[str, str]:
    """pytest node id -> (classname, name) as pytest's junitxml spells them."""
    parts = node_id.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:-1]]), parts[-1]


def _cause_text(cause: Mapping[str, Any]) -> str:
    lines = [f"root cause {cause['id']} [{cause['rule']}]: {cause['symptom']}"]
    if cause.get("section"):
        lines.append(f"document: {cause['section']}")
    first = cause["first"]
    lines.append(f"first shown by {first['check']}; it broke {len(cause['checks'])} check(s)")
    evidence = cause.get("evidence") or {}
    if "frame" in evidence:
        lines.append(f"evidence at byte {evidence.get('offset')}: {evidence['frame']}")
    if cause.get("reproducer"):
        lines.append(f"reproduce: {cause['reproducer']}")
    return "\n".join(lines)


def render_junit(document: Mapping[str, Any]) -> str:
    """Each failing check's <failure> leads with its root cause(s): the rule, the document
    section, the first evidence and a reproducer; the suite's properties list every root cause."""
    from chatprobe.reports.conform import root_causes

    checks = document["checks"]
    run = document["run"]
    causes = {c["id"]: c for c in root_causes(document)}
    failures = sum(1 for c in checks if c["verdict"] == "fail")
    skipped = sum(1 for c in checks if c["verdict"] in _SKIPPED)
    interrupted = document.get("state") == "interrupted"
    suites = ET.Element("testsuites", name="pytest tests")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "pytest", "errors": "1" if interrupted else "0", "failures": str(failures),
        "skipped": str(skipped), "tests": str(len(checks) + interrupted), "time": f"{run['duration_s']:.3f}",
        "timestamp": datetime.fromtimestamp(run["started_unix"], UTC).isoformat(),
    })
    suite_properties = ET.SubElement(suite, "properties")
    if document.get("state"):
        ET.SubElement(suite_properties, "property", name="chatprobe_state", value=str(document["state"]))
    if interrupted:  # a run stopped early is an error of the run, not a pass
        case = ET.SubElement(suite, "testcase", classname="chatprobe", name="run", time="0.000")
        ET.SubElement(case, "error", message="interrupted (SIGINT / SIGTERM): the checks after this point did not run")
    for cause in causes.values():
        ET.SubElement(
            suite_properties,
            "property",
            name=f"chatprobe_root_cause_{cause['id']}",
            value=_xml_text(f"{cause['severity']} {cause['rule']}: {cause['symptom']}"[:500]),
        )
    for check in checks:
        classname, name = _names(check["id"])
        case = ET.SubElement(suite, "testcase", classname=_xml_text(classname), name=_xml_text(name),
                             time=f"{check['duration_s']:.3f}")
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="chatprobe_verdict", value=check["verdict"])
        reason = _xml_text(check.get("reason", ""))
        own = [causes[c] for c in check.get("root_causes", []) if c in causes]
        if check["verdict"] == "fail":
            lead = [c for c in own if c["severity"] == "error"]
            message = (
                "; ".join(f"{c['id']} {c['rule']}: {c['symptom']}" for c in lead)[:1000]
                if lead
                else (f"Failed: {reason}" if reason else "failed")
            )
            failure = ET.SubElement(case, "failure", message=_xml_text(message))
            failure.text = _xml_text("\n\n".join([*(_cause_text(c) for c in lead), reason]))
        elif check["verdict"] == "not-run":
            text = f"not-run: {reason}"
            ET.SubElement(case, "skipped", type="chatprobe.not_run", message=_xml_text(text)).text = _xml_text(text)
        elif check["verdict"] in _SKIPPED:
            text = f"{check['verdict']}: {reason}"
            ET.SubElement(case, "skipped", type="pytest.skip", message=text).text = text
    body = ET.tostring(suites, encoding="unicode", short_empty_elements=True)
    return '<?xml version="1.0" encoding="utf-8"?>' + body + "\n"


def write_junit(document: Mapping[str, Any], path: Path) -> Path:
    from chatprobe.reports.files import write_text

    return write_text(path, render_junit(document))
