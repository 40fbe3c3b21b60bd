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


def render_junit(document: Mapping[str, Any]) -> str:
    checks = document["checks"]
    run = document["run"]
    failures = sum(1 for c in checks if c["verdict"] == "fail")
    skipped = sum(1 for c in checks if c["verdict"] in _SKIPPED)
    suites = ET.Element("testsuites", name="pytest tests")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "pytest", "errors": "0", "failures": str(failures), "skipped": str(skipped),
        "tests": str(len(checks)), "time": f"{run['duration_s']:.3f}",
        "timestamp": datetime.fromtimestamp(run["started_unix"], UTC).isoformat(),
    })
    for check in checks:
        classname, name = _names(check["id"])
        case = ET.SubElement(suite, "testcase", classname=_xml_text(classname), name=_xml_text(name),
                             time=f"{check['duration_s']:.3f}")
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="chatprobe_verdict", value=check["verdict"])
        reason = _xml_text(check.get("reason", ""))
        if check["verdict"] == "fail":
            failure = ET.SubElement(case, "failure", message=f"Failed: {reason}" if reason else "failed")
            failure.text = reason
        elif check["verdict"] in _SKIPPED:
            text = f"{check['verdict']}: {reason}"
            ET.SubElement(case, "skipped", type="pytest.skip", message=text).text = text
    body = ET.tostring(suites, encoding="unicode", short_empty_elements=True)
    return '<?xml version="1.0" encoding="utf-8"?>' + body + "\n"


def write_junit(document: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_junit(document), encoding="utf-8")
    return path
