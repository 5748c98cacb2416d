"""Check that the documentation names only things the repository has.

    python tools/check_docs.py [--root DIR]

For README.md, docs/*.md, roles/*/README.md, playbooks/README.md, molecule/*/README.md and
tools/**/README.md it checks:

- every relative link target exists, and every `#anchor` exists in the file it points to
  (headings slugged as GitHub slugs them, plus `<a id=...>` / `<a name=...>`);
- every repository path written in backticks exists (a word that contains `/` and either ends in
  an extension or starts with a top-level entry of the repository; `<placeholder>` and `*` match
  any one path component);
- every `make <target>` in backticks or in a fenced code block names a target of the Makefile;
- every variable name written in backticks (inline, in a shell block, or as a key of a YAML block)
  that starts with a role's prefix or `jobstack_` is set
  in some role's defaults/main.yml, vars/main.yml or meta/argument_specs.yml, or in an inventory
  (exported metric names and Python packages of the repository are names too, not variables).

Prints one line per problem (`file:line: what is wrong`) and exits 1 when there is any; exits 0
silently otherwise. Docs drift silently; this makes the drift a failing test.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import itertools
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# The documents a reader is pointed at; other Markdown (fixtures, changelogs) is not checked.
DOC_GLOBS = (
    "README.md",
    "docs/*.md",
    "roles/*/README.md",
    "playbooks/README.md",
    "molecule/*/README.md",
    "tools/**/README.md",
)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
# `<!-- check_docs: examples ap_south prod-ap-south-1 -->` declares names that a how-to asks the
# reader to create: a path component with such a name stands for any existing one.
EXAMPLES_MARKER = re.compile(r"<!--\s*check_docs:\s*examples\s+([^>]*?)\s*-->")
SHELL_LANGUAGES = ("sh", "bash", "shell", "console")
YAML_KEY = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w]*)\s*:(?:\s|$)")
HTML_ANCHOR = re.compile(r"""<a\s+[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
# `make [-k] [VAR=value ...] target`: the first word that is neither an option nor an assignment.
MAKE_COMMAND = re.compile(
    r"(?:^|[\s;&|(`])make(?:\s+(?:-[A-Za-z-]+|[A-Za-z_][A-Za-z0-9_]*=\S*))*\s+([A-Za-z0-9][\w.-]*)"
)
MAKE_TARGET_LINE = re.compile(r"^([A-Za-z0-9][\w./-]*(?:[ \t]+[A-Za-z0-9][\w./-]*)*)[ \t]*::?(?!=)")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}$")
LINE_ANCHOR = re.compile(r"^L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?$")
# A path inside backticks: no spaces; words are split on whitespace, quotes and shell syntax.
WORD_SPLIT = re.compile(r"""[\s"'`,;|&()\[\]]+""")
PROMETHEUS_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info")


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclasses.dataclass
class Document:
    """A Markdown file split into what the checks read: code, links and anchors, with line numbers."""

    path: Path
    code_spans: list[tuple[int, str]]
    code_blocks: list[tuple[int, str]]
    # Lines of shell blocks (```sh, ```bash, ```console): commands whose paths are checked too.
    shell_lines: list[tuple[int, str]]
    # Lines of YAML blocks: the variables they set are checked too.
    yaml_lines: list[tuple[int, str]]
    links: list[tuple[int, str]]
    anchors: set[str]
    # Names the document declares as examples of things to create (see EXAMPLES_MARKER).
    examples: set[str] = dataclasses.field(default_factory=set)


# -- Markdown ---------------------------------------------------------------------------------------
def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    kept = (
        char
        for char in text
        if char in " -" or unicodedata.category(char)[0] in "LMN" or unicodedata.category(char) == "Pc"
    )
    return "".join(kept).replace(" ", "-")


def _blank_code_spans(text: str) -> str:
    """The text with code spans replaced by spaces of the same length, so positions keep their line."""
    return CODE_SPAN.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), text)


def parse_markdown(path: Path) -> Document:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    document = Document(path, [], [], [], [], [], set())
    document.examples = {name for names in EXAMPLES_MARKER.findall(text) for name in names.split()}
    slug_counts: dict[str, int] = {}
    paragraph: list[tuple[int, str]] = []

    def add_heading(text: str) -> None:
        slug = github_slug(text)
        count = slug_counts.get(slug, 0)
        slug_counts[slug] = count + 1
        document.anchors.add(slug if count == 0 else f"{slug}-{count}")

    def flush() -> None:
        if not paragraph:
            return
        first = paragraph[0][0]
        text = "\n".join(line for _, line in paragraph)
        plain = _blank_code_spans(text)
        # Code in the text of a link to another site names that site's files (`cmd/main.go`), not ours.
        elsewhere: list[range] = []
        for match in itertools.chain(INLINE_LINK.finditer(plain), REFERENCE_DEFINITION.finditer(plain)):
            target = match.group(1).strip("<>")
            document.links.append((first + plain.count("\n", 0, match.start()), target))
            if URL_SCHEME.match(target):
                elsewhere.append(range(match.start(), match.end()))
        for match in CODE_SPAN.finditer(text):
            if not any(match.start() in span for span in elsewhere):
                document.code_spans.append((first + text.count("\n", 0, match.start()), match.group(2)))
        document.anchors.update(HTML_ANCHOR.findall(text))
        paragraph.clear()

    fence: str | None = None
    language = ""
    for number, line in enumerate(lines, start=1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            else:
                document.code_blocks.append((number, line))
                if language in SHELL_LANGUAGES:
                    document.shell_lines.append((number, line))
                elif language in ("yaml", "yml"):
                    document.yaml_lines.append((number, line))
            continue
        if opening:
            flush()
            fence = opening.group(1)
            language = opening.group(2).lower()
            continue
        heading = ATX_HEADING.match(line)
        if heading:
            flush()
            add_heading(heading.group(2))
            paragraph.append((number, line))
            flush()
            continue
        if paragraph and SETEXT_UNDERLINE.match(line):
            add_heading(" ".join(text.strip() for _, text in paragraph))
            flush()
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append((number, line))
    flush()
    return document


# -- what the repository has ------------------------------------------------------------------------
class Repository:
    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cached_property
    def ignored(self) -> list[str]:
        """.gitignore patterns: paths under them are build outputs, which a clean clone does not have."""
        gitignore = self.root / ".gitignore"
        if not gitignore.is_file():
            return []
        patterns = (line.strip() for line in gitignore.read_text(encoding="utf-8").splitlines())
        return [pattern for pattern in patterns if pattern and not pattern.startswith(("#", "!"))]

    def is_ignored(self, relative: str) -> bool:
        parts = [part for part in relative.split("/") if part]
        for pattern in self.ignored:
            anchored = pattern.startswith("/")
            bare = pattern.strip("/")
            candidates = parts[:1] if anchored else parts
            if any(fnmatch.fnmatchcase(part, bare) for part in candidates):
                return True
        return False

    @functools.cached_property
    def files(self) -> list[str]:
        """Every file and directory below the root (relative, '/'-separated; directories end in '/'),
        without .git and build outputs (a virtualenv would cost seconds to walk)."""
        found: list[str] = []
        for folder, directories, names in os.walk(self.root):
            base = Path(folder).relative_to(self.root).as_posix()
            prefix = "" if base == "." else base + "/"
            directories[:] = [name for name in directories if name != ".git" and not self.is_ignored(prefix + name)]
            found.extend(prefix + name + "/" for name in directories)
            found.extend(prefix + name for name in names if not self.is_ignored(prefix + name))
        return found

    @functools.cached_property
    def top_level(self) -> set[str]:
        return {path.name for path in self.root.iterdir() if not self.is_ignored(path.name) and path.name != ".git"}

    @functools.cached_property
    def make_targets(self) -> set[str]:
        makefile = self.root / "Makefile"
        targets: set[str] = set()
        if makefile.is_file():
            for line in makefile.read_text(encoding="utf-8").splitlines():
                match = MAKE_TARGET_LINE.match(line)
                if match:
                    targets.update(name for name in match.group(1).split() if not name.startswith("."))
        return targets

    @functools.cached_property
    def role_prefixes(self) -> tuple[str, ...]:
        roles = self.root / "roles"
        # Internal roles (_common) keep their underscore: their variables are _common_*.
        names = sorted(path.name for path in roles.iterdir() if path.is_dir()) if roles.is_dir() else []
        return (*names, "jobstack")

    @functools.cached_property
    def variable_pattern(self) -> re.Pattern[str]:
        prefixes = "|".join(re.escape(prefix) for prefix in sorted(self.role_prefixes, key=len, reverse=True))
        # A whole name: not part of a path, a longer word or a dotted module name.
        return re.compile(rf"(?<![\w./-])(_{{0,3}}(?:{prefixes})_[a-z0-9_]*[a-z0-9])(?![\w/-]|\.[a-z])")

    @functools.cached_property
    def variables(self) -> set[str]:
        names: set[str] = set()
        sources = itertools.chain(
            self.root.glob("roles/*/defaults/main.yml"),
            self.root.glob("roles/*/vars/main.yml"),
            self.root.glob("inventories/*/group_vars/**/*.yml"),
            self.root.glob("inventories/*/host_vars/**/*.yml"),
        )
        for source in sources:
            data = _load_yaml(source)
            if isinstance(data, dict):
                names.update(str(key) for key in data)
        for specs in self.root.glob("roles/*/meta/argument_specs.yml"):
            data = _load_yaml(specs)
            entry_points = data.get("argument_specs", {}) if isinstance(data, dict) else {}
            for entry in entry_points.values():
                names.update(str(key) for key in (entry or {}).get("options", {}) or {})
        for hosts in self.root.glob("inventories/*/hosts.yml"):
            names.update(_inventory_vars(_load_yaml(hosts)))
        # Facts that tasks publish (set_fact), registered results and tags are names a reader uses too.
        plays = itertools.chain(
            self.root.glob("roles/*/tasks/**/*.yml"),
            self.root.glob("roles/*/handlers/**/*.yml"),
            self.root.glob("playbooks/**/*.yml"),
            self.root.glob("*.yml"),
        )
        for play in plays:
            names.update(_task_names(_load_yaml(play)))
        return names

    @functools.cached_property
    def other_names(self) -> set[str]:
        """Names that look like variables but are not: metrics the services export, Python packages, filters."""
        python = [path for path in self.files if path.endswith(".py")]
        names = {Path(path).stem for path in python} | {Path(path).parent.name for path in python}
        sources = [path for path in python if path.startswith("services/")]
        texts = [(self.root / path).read_text(encoding="utf-8") for path in sources]
        prefixes = {match for text in texts for match in re.findall(r"metrics_prefix\s*=\s*\"(\w+)\"", text)}
        for text in texts:
            names.update(re.findall(r"[\"'](jobstack_\w+)[\"']", text))
            for suffix in re.findall(r"f[\"']\{prefix\}(_\w+)[\"']", text):
                names.update(prefix + suffix for prefix in prefixes)
        # The collection's filters (a role prefix such as release_ may start their names).
        for path in python:
            if path.startswith("plugins/filter/"):
                text = (self.root / path).read_text(encoding="utf-8")
                names.update(re.findall(r"^def ([a-z]\w*)\(", text, re.MULTILINE))
        return names

    def is_known_name(self, name: str) -> bool:
        if name in self.variables or name in self.other_names:
            return True
        base = next((name[: -len(suffix)] for suffix in PROMETHEUS_SUFFIXES if name.endswith(suffix)), None)
        return base is not None and base in self.other_names

    def glob(self, pattern: str) -> bool:
        """Whether any file or directory matches pattern ('*' stays within one component)."""
        pattern = pattern.rstrip("/")
        depth = pattern.count("/")
        for path in self.files:
            candidate = path.rstrip("/")
            if candidate.count("/") == depth and fnmatch.fnmatchcase(candidate, pattern):
                return True
        return False

    def glob_suffix(self, pattern: str) -> bool:
        """Whether pattern matches the end of any path (a path relative to some directory)."""
        pattern = pattern.rstrip("/")
        depth = pattern.count("/")
        for path in self.files:
            tail = "/".join(path.rstrip("/").split("/")[-depth - 1 :])
            if tail.count("/") == depth and fnmatch.fnmatchcase(tail, pattern):
                return True
        return False


class _AnsibleLoader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's tags (!vault, !unsafe): only the keys matter here."""


_AnsibleLoader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def _load_yaml(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if text.startswith("$ANSIBLE_VAULT"):
        return None  # a vaulted file: its names are secret and never documented
    return yaml.load(text, Loader=_AnsibleLoader)  # noqa: S506 - a SafeLoader subclass


def _inventory_vars(groups: object) -> Iterator[str]:
    """Variables set in an inventory file: each group's vars, each host's values, the children's."""
    if not isinstance(groups, dict):
        return
    for group in groups.values():
        if not isinstance(group, dict):
            continue
        yield from (str(key) for key in group.get("vars") or {})
        for host in (group.get("hosts") or {}).values():
            yield from (str(key) for key in host or {})
        yield from _inventory_vars(group.get("children"))


def _task_names(node: object) -> Iterator[str]:
    """Facts set, results registered and tags given anywhere in a task or play file."""
    if isinstance(node, list):
        for item in node:
            yield from _task_names(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                yield from (str(name) for name in value if name != "cacheable")
            elif key == "register" and isinstance(value, str):
                yield value
            elif key == "tags":
                yield from ([value] if isinstance(value, str) else [str(tag) for tag in value or []])
            else:
                yield from _task_names(value)


# -- the checks -------------------------------------------------------------------------------------
class Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = Repository(root)
        self._documents: dict[Path, Document] = {}

    def document(self, path: Path) -> Document:
        if path not in self._documents:
            self._documents[path] = parse_markdown(path)
        return self._documents[path]

    def documents(self) -> list[Path]:
        found = {path for pattern in DOC_GLOBS for path in self.root.glob(pattern) if path.is_file()}
        return sorted(path for path in found if not self.repo.is_ignored(path.relative_to(self.root).as_posix()))

    def run(self) -> list[Finding]:
        findings: list[Finding] = []
        for path in self.documents():
            document = self.document(path)
            relative = path.relative_to(self.root).as_posix()
            problems = itertools.chain(
                self.check_links(document),
                self.check_paths(document),
                self.check_make(document),
                self.check_variables(document),
            )
            findings.extend(Finding(relative, line, message) for line, message in problems)
        return sorted(set(findings))

    def check_links(self, document: Document) -> Iterator[tuple[int, str]]:
        for line, target in document.links:
            if not target or URL_SCHEME.match(target) or target.startswith("//"):
                continue
            location, _, anchor = target.partition("#")
            location = unquote(location)
            if location.startswith("/"):
                yield line, f"link {target!r} is absolute; link relative to this file"
                continue
            destination = (document.path.parent / location).resolve() if location else document.path
            if not destination.is_relative_to(self.root.resolve()):
                yield line, f"link {target!r} points outside the repository"
                continue
            shown = destination.relative_to(self.root.resolve()).as_posix()
            if not destination.exists():
                yield line, f"link target {shown} does not exist"
                continue
            if not anchor:
                continue
            anchor = unquote(anchor)
            if destination.suffix.lower() == ".md" and destination.is_file():
                if anchor not in self.document(destination).anchors:
                    yield line, f"anchor #{anchor} does not exist in {shown}"
            elif destination.is_file() and LINE_ANCHOR.match(anchor):
                continue
            else:
                yield line, f"anchor #{anchor} cannot be checked in {shown} (not a Markdown file)"

    def check_paths(self, document: Document) -> Iterator[tuple[int, str]]:
        doc_dir = document.path.parent.relative_to(self.root).as_posix()
        for line, span in itertools.chain(document.code_spans, document.shell_lines):
            for word in WORD_SPLIT.split(span.split(" #", 1)[0]):
                path = self._path_in(word)
                if path is not None and not self._path_exists(path, doc_dir, document.examples):
                    yield line, f"path {path} does not exist"

    def _path_in(self, word: str) -> str | None:
        """The repository path a backticked word names, or None if it does not look like one."""
        word = word.split("=", 1)[1] if re.match(r"^-*[A-Za-z_][\w-]*=", word) else word
        word = word.rstrip(".:")
        if "/" not in word or "://" in word or word.startswith(("/", "~", "$", "-", "../")):
            return None
        if re.search(r"[{}$%@:=\\]", word):
            return None  # Jinja, shell variables, URLs without a scheme, key: value
        first = word.split("/", 1)[0]
        last = word.rstrip("/").rsplit("/", 1)[-1]
        if first.startswith("."):
            first = first if first not in (".", "..") else ""
        if not (EXTENSION.search(last) or first in self.repo.top_level):
            return None
        if self.repo.is_ignored(word.removeprefix("./")):
            return None  # a build output, absent from a clean clone by design
        return word.removeprefix("./")

    def _path_exists(self, path: str, doc_dir: str, examples: set[str]) -> bool:
        """Whether path names something: from the root, from the document's folder, or (for a path
        that does not start at the root) as the tail of some path. Placeholders (`<env>`, `*`) and
        the document's declared example names match any one component."""
        components = ["*" if part in examples else part for part in path.split("/")]
        pattern = re.sub(r"<[^<>]*>", "*", "/".join(components)).replace("...", "*")
        relative = f"{doc_dir}/{pattern}" if doc_dir != "." else pattern
        if self.repo.glob(pattern) or self.repo.glob(relative):
            return True
        return pattern.split("/", 1)[0] not in self.repo.top_level and self.repo.glob_suffix(pattern)

    def check_make(self, document: Document) -> Iterator[tuple[int, str]]:
        code = itertools.chain(document.code_spans, document.code_blocks)
        for line, text in code:
            for match in MAKE_COMMAND.finditer(text):
                target = match.group(1)
                if target not in self.repo.make_targets:
                    yield line, f"make target {target!r} is not in the Makefile"

    def check_variables(self, document: Document) -> Iterator[tuple[int, str]]:
        # Shell blocks count whole (`-e name=value`); in YAML blocks only the keys count (values are
        # strings, Jinja, examples of anything).
        keys = ((line, match.group(1)) for line, text in document.yaml_lines if (match := YAML_KEY.match(text)))
        for line, span in itertools.chain(document.code_spans, document.shell_lines, keys):
            for name in self.repo.variable_pattern.findall(span):
                if not self.repo.is_known_name(name):
                    yield line, f"variable {name} is not set in any role's defaults, vars, argument specs or inventory"


def check(root: Path) -> list[Finding]:
    return Checker(root.resolve()).run()


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository to check (default: this one)")
    arguments = parser.parse_args(list(argv) if argv is not None else None)
    findings = check(arguments.root)
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
