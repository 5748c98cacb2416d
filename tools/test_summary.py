"""One closing line for `make test`: what ran, from the JUnit files of pytest and the molecule results.

    python tools/test_summary.py build/test-results
Each molecule scenario counts as one test; a scenario reported NOT RUN counts as skipped, never as passed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(results: Path) -> int:
    passed = failed = skipped = 0
    for report in sorted(results.glob("*.xml")):
        for suite in ET.parse(report).getroot().iter("testsuite"):  # noqa: S314 - our own pytest output
            tests, failures, errors = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors"))
            suite_skipped = int(suite.get("skipped", 0))
            failed += failures + errors
            skipped += suite_skipped
            passed += tests - failures - errors - suite_skipped
    for outcome in sorted(results.glob("molecule-*.txt")):
        text = outcome.read_text()
        if "NOT RUN" in text:
            skipped += 1
            print(text.strip())
        elif text.strip() == "passed":
            passed += 1
        else:
            failed += 1
    print(f"summary: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-results")))
