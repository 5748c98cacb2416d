"""The alert rules pass promtool, each alert is unit-tested both ways, and each runbook link resolves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .queries import ROOT, RULES, alert_rules, promtool

UNIT_TESTS = Path(__file__).with_name("alerts_test.yml")
RUNBOOK = ROOT / "docs" / "operations.md"
# The one base of every runbook_url (documented in roles/monitoring/README.md): the collection's
# repository as galaxy.yml names it, so that the alerts link where the collection says it lives.
REPOSITORY = yaml.safe_load((ROOT / "galaxy.yml").read_text())["repository"]
RUNBOOK_BASE = f"{REPOSITORY}/blob/main/docs/operations.md#"


def unit_test_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in alert_rules() if "alert" in rule]


def failed_groups(output: str) -> set[str]:
    """Names of the unit-test groups promtool reports as failed (`name: <group>,` lines)."""
    return {match.group(1) for match in re.finditer(r"^\s*name: (.+),\s*$", output, re.MULTILINE)}


def test_promtool_check_rules_accepts_the_rules_without_any_finding() -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output
    assert "warning" not in output.lower(), output


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool("test", "rules", str(UNIT_TESTS))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAILED" not in output, output


def test_every_alert_has_a_group_where_it_fires_and_one_where_it_stays_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in unit_test_groups():
        for name in {check["alertname"] for check in group["alert_rule_test"]}:
            checks = [check for check in group["alert_rule_test"] if check["alertname"] == name]
            if any(check.get("exp_alerts") for check in checks):
                fires.add(name)
            else:
                quiet.add(name)
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts never fired by alerts_test.yml"
    assert names - quiet == set(), "alerts without a quiet group in alerts_test.yml"
    assert (fires | quiet) - names == set(), "alerts_test.yml tests alerts that do not exist"


def test_every_alert_keeps_the_region_and_cluster_of_its_series() -> None:
    labelled: set[str] = set()
    for group in unit_test_groups():
        for check in group["alert_rule_test"]:
            for alert in check.get("exp_alerts") or []:
                if {"region", "cluster"} <= set(alert["exp_labels"]):
                    labelled.add(check["alertname"])
    assert {rule["alert"] for rule in alerts()} - labelled == set()


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule["alert"]
        assert annotations["runbook_url"].startswith(RUNBOOK_BASE), rule["alert"]


def test_the_collection_links_and_the_runbooks_share_one_base() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert REPOSITORY.startswith("https://"), REPOSITORY
    for key in ("homepage", "documentation", "issues"):
        assert galaxy[key].startswith(REPOSITORY), f"galaxy.yml {key} {galaxy[key]} is not under {REPOSITORY}"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor -> text of each `###` sub-section of the "## Alerts" section of docs/operations.md."""
    parts = re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)
    body = next((part for part in parts if part.startswith("Alerts\n")), None)
    assert body is not None, f"{RUNBOOK.relative_to(ROOT)} has no '## Alerts' section"
    sections = re.split(r"^### ", body, flags=re.MULTILINE)[1:]
    return {github_anchor(section.splitlines()[0]): section for section in sections}


def test_every_runbook_url_points_to_its_own_subsection_of_the_alerts_runbook() -> None:
    sections = runbook_sections()
    anchors = [rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE) for rule in alerts()]
    assert len(set(anchors)) == len(anchors), "two alerts share a runbook section"
    for rule, anchor in zip(alerts(), anchors, strict=True):
        assert anchor in sections, f"{rule['alert']}: no heading with anchor #{anchor} under '## Alerts'"
        assert github_anchor(rule["alert"]) == anchor, f"{rule['alert']}: its section is #{anchor}"
    assert set(sections) - set(anchors) == set(), "runbook sections without an alert"


def test_github_anchors_are_computed_as_github_does() -> None:
    assert github_anchor("JobstackBrokerMemoryAlarm") == "jobstackbrokermemoryalarm"
    assert github_anchor("Roll back to the previous image") == "roll-back-to-the-previous-image"
    assert github_anchor("Delivery bound: why the engine counts deliveries itself") == (
        "delivery-bound-why-the-engine-counts-deliveries-itself"
    )


@pytest.mark.parametrize(
    ("mutation", "must_fail"),
    [
        # An expression that never matches: every group in which the alert should fire must fail.
        ("absent(vector(1))", "fires"),
        # An expression that always matches: every group in which the alert stays quiet must fail.
        ('label_replace(vector(1), "region", "anywhere", "", "")', "quiet"),
    ],
)
def test_the_unit_tests_catch_an_alert_expression_that_is_wrong(tmp_path: Path, mutation: str, must_fail: str) -> None:
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = mutation
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(document))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = ["rules.yml"]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))

    result = promtool("test", "rules", str(tmp_path / "tests.yml"))

    assert result.returncode != 0
    expected = {
        group["name"]
        for group in unit_test_groups()
        if any(bool(check.get("exp_alerts")) == (must_fail == "fires") for check in group["alert_rule_test"])
    }
    assert expected - failed_groups(result.stdout + result.stderr) == set()
