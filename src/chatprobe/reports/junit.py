"""JUnit XML of a conformance run, rendered from its findings.json.

During ``chatprobe conform`` pytest's own junitxml plugin writes junit.xml
live; this renders the same structure from the JSON afterwards (``chatprobe
report``), so a CI job can regenerate it from an archived findings.json:
``testsuites "pytest tests"`` > ``testsuite "pytest"`` > one ``testcase``
per check (classname and name from the pytest node id), the
``chatprobe_verdict`` property on each, ``<failure>`` for fail and
``<skipped>`` for unsupported / n/a, as the chatprobe pytest plugin maps them.
An accepted failure (``--accept``) is ``<skipped type="pytest.xfail">``, as pytest
writes the expected failure the plugin makes of it: shown by every JUnit viewer,
failing no build (a passed case with a property would hide it), its message the
acceptance's reason, its text the failure. Stale and expired acceptances are suite
properties; with ``--strict-accept`` a stale one is a failed case ``chatprobe::accept``.
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
    acceptances = document.get("acceptances") or []
    strict_stale = [a for a in acceptances if a["status"] == "stale"] if (run.get("accept") or {}).get("strict") else []
    failures = sum(1 for c in checks if c["verdict"] == "fail") + bool(strict_stale)
    skipped = sum(1 for c in checks if c["verdict"] in (*_SKIPPED, "accepted"))
    interrupted = document.get("state") == "interrupted"
    suites = ET.Element("testsuites", name="pytest tests")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "pytest", "errors": "1" if interrupted else "0", "failures": str(failures),
        "skipped": str(skipped), "tests": str(len(checks) + interrupted + bool(strict_stale)),
        "time": f"{run['duration_s']:.3f}",
        "timestamp": datetime.fromtimestamp(run["started_unix"], UTC).isoformat(),
    })
    suite_properties = ET.SubElement(suite, "properties")
    if document.get("state"):
        ET.SubElement(suite_properties, "property", name="chatprobe_state", value=str(document["state"]))
    if interrupted:  # a run stopped early is an error of the run, not a pass
        case = ET.SubElement(suite, "testcase", classname="chatprobe", name="run", time="0.000")
        ET.SubElement(case, "error", message="interrupted (SIGINT / SIGTERM): the checks after this point did not run")
    for cause in causes.values():
        severity = "accepted" if cause.get("accepted") else cause["severity"]
        ET.SubElement(
            suite_properties,
            "property",
            name=f"chatprobe_root_cause_{cause['id']}",
            value=_xml_text(f"{severity} {cause['rule']}: {cause['symptom']}"[:500]),
        )
    for n, a in enumerate((a for a in acceptances if a["status"] != "live"), 1):
        ET.SubElement(suite_properties, "property", name=f"chatprobe_acceptance_{a['status']}_{n}",
                      value=_xml_text(f"{a['id']} ({a['source']}): {a['detail']}"[:500]))
    if strict_stale:  # --strict-accept: the stale acceptances fail the run
        case = ET.SubElement(suite, "testcase", classname="chatprobe", name="accept", time="0.000")
        text = "\n".join(f"{a['id']} ({a['source']}): {a['detail']}" for a in strict_stale)
        ET.SubElement(case, "failure", message=_xml_text(f"{len(strict_stale)} stale acceptance(s) (--strict-accept)")).text = _xml_text(text)
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
        elif check["verdict"] == "accepted":
            entries = (check.get("acceptance") or {}).get("entries") or []
            for entry in entries:
                ET.SubElement(properties, "property", name="chatprobe_acceptance", value=_xml_text(f"{entry['id']} ({entry['source']})"))
            lead = [causes[c] for c in check.get("root_causes", []) if c in causes]
            message = _xml_text(reason[:1000] or "accepted")
            ET.SubElement(case, "skipped", type="pytest.xfail", message=message).text = _xml_text(
                "\n\n".join([reason, *(_cause_text(c) for c in lead)])
            )
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
