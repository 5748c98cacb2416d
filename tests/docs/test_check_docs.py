"""tools/check_docs.py: the docs name only links, anchors, paths, make targets and variables that exist.

The first test is the gate on the repository itself; the others feed the checker a small fixture
repository, first clean (no finding), then with exactly one thing broken (exactly one finding).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.check_docs import check, github_slug

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKER = REPO_ROOT / "tools" / "check_docs.py"


def test_the_repository_docs_name_only_what_exists():
    run = subprocess.run([sys.executable, str(CHECKER)], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and run.stdout == "", f"check_docs findings:\n{run.stdout}{run.stderr}"


# -- a fixture repository ---------------------------------------------------------------------------
GUIDE = """\
# Guide

## Scaling the `engine`

Set `engine_replicas` (see [the README](../README.md#try-it)); `roles/engine/defaults/main.yml`
has the default. Rendered files land in `rendered/<env>/` and are not in the repository.

## Scaling the `engine`

A second heading with the same text.
"""

README = """\
# Fixture

Read [the guide](docs/guide.md), its [second section](docs/guide.md#scaling-the-engine-1) and
[this file's own section](#try-it). A [site](https://example.com/x.md#nowhere) is not checked, nor
the names in [`cmd/main.go` of another project](https://example.com/cmd/main.go).

## Try it

```sh
make test
.venv/bin/python tools/tool.py inventories/dev
```

`make deploy ENV=local` deploys; `inventories/<env>/group_vars/all/engine.yml` sets
`engine_replicas`, the service exports `jobstack_engine_jobs_total`, and `jobstack_region` is set
per region.

<!-- check_docs: examples ap_south -->
To add a region, create `inventories/dev/group_vars/ap_south/main.yml`.

```yaml
engine_replicas: 2
jobstack_region: ap-south-1
```

```sh
ansible-playbook site.yml -i inventories/dev -e engine_replicas=3
```
"""

FILES = {
    "README.md": README,
    "docs/guide.md": GUIDE,
    "Makefile": "deploy:\n\ttrue\n\ntest: deploy\n\ttrue\n",
    ".gitignore": ".venv/\nrendered/\n",
    "roles/engine/defaults/main.yml": "---\nengine_replicas: 1\n",
    "roles/engine/meta/argument_specs.yml": (
        "---\nargument_specs:\n  main:\n    options:\n      engine_replicas:\n        type: int\n"
    ),
    "inventories/dev/group_vars/all/engine.yml": "---\nengine_replicas: 2\n",
    "inventories/dev/group_vars/local/main.yml": "---\njobstack_region: local\n",
    "inventories/dev/hosts.yml": "---\nall:\n  children:\n    local:\n      hosts:\n        here:\n",
    "services/engine.py": 'metrics_prefix = "jobstack_engine"\nJOBS = Counter("jobstack_engine_jobs", "")\n',
    "tools/tool.py": "",
}


@pytest.fixture
def fixture_repo(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new))


def lines_of(findings) -> list[str]:
    return [str(finding) for finding in findings]


def test_a_clean_fixture_has_no_finding(fixture_repo):
    assert lines_of(check(fixture_repo)) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        pytest.param(
            "README.md",
            "(docs/guide.md)",
            "(docs/gide.md)",
            "README.md:3: link target docs/gide.md does not exist",
            id="dead-link",
        ),
        pytest.param(
            "README.md",
            "guide.md#scaling-the-engine-1",
            "guide.md#scaling-the-engine-2",
            "README.md:3: anchor #scaling-the-engine-2 does not exist in docs/guide.md",
            id="dead-anchor-in-another-file",
        ),
        pytest.param(
            "README.md",
            "(#try-it)",
            "(#try-this)",
            "README.md:4: anchor #try-this does not exist in README.md",
            id="dead-anchor-in-the-same-file",
        ),
        pytest.param(
            "docs/guide.md",
            "../README.md",
            "../../README.md",
            "docs/guide.md:5: link '../../README.md#try-it' points outside the repository",
            id="link-outside-the-repository",
        ),
        pytest.param(
            "README.md",
            "make test\n",
            "make tests\n",
            "README.md:10: make target 'tests' is not in the Makefile",
            id="unknown-make-target-in-a-code-block",
        ),
        pytest.param(
            "README.md",
            "`make deploy ENV=local`",
            "`make deploy-all ENV=local`",
            "README.md:14: make target 'deploy-all' is not in the Makefile",
            id="unknown-make-target-in-backticks",
        ),
        pytest.param(
            "README.md",
            "sets\n`engine_replicas`",
            "sets\n`engine_replica`",
            "README.md:15: variable engine_replica is not set in any role's defaults, vars, "
            "argument specs or inventory",
            id="unknown-variable",
        ),
        pytest.param(
            "README.md",
            "jobstack_region: ap-south-1",
            "jobstack_regoin: ap-south-1",
            "README.md:23: variable jobstack_regoin is not set in any role's defaults, vars, "
            "argument specs or inventory",
            id="unknown-variable-in-a-yaml-block",
        ),
        pytest.param(
            "README.md",
            "-e engine_replicas=3",
            "-e engine_replcias=3",
            "README.md:27: variable engine_replcias is not set in any role's defaults, vars, "
            "argument specs or inventory",
            id="unknown-variable-in-a-shell-block",
        ),
        pytest.param(
            "docs/guide.md",
            "`roles/engine/defaults/main.yml`",
            "`roles/engine/default/main.yml`",
            "docs/guide.md:5: path roles/engine/default/main.yml does not exist",
            id="missing-path",
        ),
        pytest.param(
            "README.md",
            "tools/tool.py",
            "tools/tool2.py",
            "README.md:11: path tools/tool2.py does not exist",
            id="missing-path-in-a-shell-block",
        ),
        pytest.param(
            "README.md",
            "`inventories/<env>/group_vars/all/engine.yml`",
            "`inventories/<env>/group_vars/all/engines.yml`",
            "README.md:14: path inventories/<env>/group_vars/all/engines.yml does not exist",
            id="placeholder-path-that-matches-nothing",
        ),
        pytest.param(
            "README.md",
            "`inventories/dev/group_vars/ap_south/main.yml`",
            "`inventories/dev/grop_vars/ap_south/main.yml`",
            "README.md:19: path inventories/dev/grop_vars/ap_south/main.yml does not exist",
            id="example-name-does-not-excuse-a-typo-elsewhere",
        ),
    ],
)
def test_one_broken_name_gives_exactly_one_finding(fixture_repo, file, old, new, expected):
    replace(fixture_repo / file, old, new)
    assert lines_of(check(fixture_repo)) == [expected]


def test_an_undeclared_example_path_is_a_finding(fixture_repo):
    replace(fixture_repo / "README.md", "<!-- check_docs: examples ap_south -->\n", "")
    assert lines_of(check(fixture_repo)) == [
        "README.md:18: path inventories/dev/group_vars/ap_south/main.yml does not exist"
    ]


def test_the_command_prints_one_line_per_finding_and_exits_1(fixture_repo):
    replace(fixture_repo / "README.md", "(docs/guide.md)", "(docs/gide.md)")
    replace(fixture_repo / "README.md", "make test\n", "make tests\n")
    run = subprocess.run(
        [sys.executable, str(CHECKER), "--root", str(fixture_repo)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "README.md:3: link target docs/gide.md does not exist",
        "README.md:10: make target 'tests' is not in the Makefile",
    ]


def test_the_command_exits_0_silently_on_a_clean_tree(fixture_repo):
    run = subprocess.run(
        [sys.executable, str(CHECKER), "--root", str(fixture_repo)], capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_headings_inside_code_blocks_are_not_anchors(fixture_repo):
    replace(fixture_repo / "README.md", "(#try-it)", "(#not-a-heading)")
    (fixture_repo / "README.md").write_text((fixture_repo / "README.md").read_text() + "\n```\n# not a heading\n```\n")
    assert lines_of(check(fixture_repo)) == ["README.md:4: anchor #not-a-heading does not exist in README.md"]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "Delivery bound: why the engine counts deliveries itself",
            "delivery-bound-why-the-engine-counts-deliveries-itself",
        ),
        ("The `user_interface`", "the-user_interface"),
        ("RPO and RTO per failure (minutes)", "rpo-and-rto-per-failure-minutes"),
        ("KEDA: HTTP mode vs. AMQP mode", "keda-http-mode-vs-amqp-mode"),
        ("N+1 headroom across regions", "n1-headroom-across-regions"),
        ("[Linked](other.md) heading", "linked-heading"),
        ("Prefetch \u00d7 job body", "prefetch--job-body"),
    ],
)
def test_anchors_follow_githubs_slug_rules(heading, anchor):
    assert github_slug(heading) == anchor
