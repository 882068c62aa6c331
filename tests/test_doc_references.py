"""Every `docs/NAME.md N.N` the code and docs cite names a file and a section that exist."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = ("app", "models", "workbench", "simsearch_client", "tests", "docs", "docker")
# "docs/ALGORITHMS.md 1.7", "docs/ALGORITHMS.md 3.1-3.3", "docs/ARCHITECTURE.md 5",
# "`docs/ALGORITHMS.md` 1.5, 1.6, 2, 4.2 and 7.3", "docs/ALGORITHMS.md section 5".
CITATION = re.compile(
    r"docs/([A-Z]+)\.md`?,? (?:section )?(\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?"
    r"(?:(?:, | and )\d+(?:\.\d+)?)*)"
)
# Level-2 and level-3 headings that start with their number: "## 5. ...", "### 1.7 ...".
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
# Numbered items of a section's list ("11. **Resizing ...") count as sub-sections N.M of it.
ITEM = re.compile(r"^(\d+)\. ", re.MULTILINE)


def _sections(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    found = set(HEADING.findall(text))
    # Items of a numbered list under a level-2 heading with no level-3 headings (section 7).
    parts = re.split(r"^## (\d+)\. ", text, flags=re.MULTILINE)
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        if not re.search(r"^### ", body, re.MULTILINE):
            found.update(f"{number}.{item}" for item in ITEM.findall(body))
    return found


def _cited_numbers(spec: str) -> list[str]:
    numbers = re.split(r", | and ", spec)
    out: list[str] = []
    for number in numbers:
        out.extend(number.split("-"))
    return out


def _sources() -> list[Path]:
    files: list[Path] = []
    for tree in TREES:
        for path in (REPO / tree).rglob("*"):
            if path.suffix in {".py", ".md", ".sh", ".yml", ".toml"} or path.name == "Dockerfile":
                files.append(path)
    return [*files, REPO / "README.md", REPO / "Makefile"]


def test_every_cited_section_exists() -> None:
    missing: list[str] = []
    cited = 0
    for path in _sources():
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            doc = REPO / "docs" / f"{match.group(1)}.md"
            where = f"{path.relative_to(REPO)}: {match.group(0)}"
            if not doc.is_file():
                missing.append(f"{where} (no such file)")
                continue
            sections = _sections(doc)
            for number in _cited_numbers(match.group(2)):
                cited += 1
                if number not in sections:
                    missing.append(f"{where} (no section {number})")
    assert cited > 40, f"only {cited} citations found: is the pattern still right?"
    assert not missing, "\n".join(missing)


def test_no_reference_leaves_the_repository() -> None:
    """The design notes live in docs/: nothing cites a file outside the repository."""
    outside = re.compile(
        r"(?<![\w/])(?:spec/ALGORITHMS|DESIGN|MILVUS)\.md|\.\./shared/(?:spec|GPU)"
    )
    hits = []
    for path in _sources():
        if path.is_file() and path != Path(__file__).resolve():
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if outside.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


# "python -m workbench.bench.store", "-m workbench.export", "`workbench/ingest/bulk.py`".
TOOL_MODULE = re.compile(r"-m (workbench(?:\.\w+)*)")
TOOL_FILE = re.compile(r"(?<![\w/.])(workbench/[\w/]+\.(?:py|sh))")


def _module_exists(dotted: str) -> bool:
    path = REPO / Path(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_named_tool_exists() -> None:
    """Commands (`python -m workbench.X`) and files (`workbench/X.py`) named in the code, the
    docs, the Makefile and the Docker files name modules that exist."""
    missing = []
    named = 0
    for path in [*_sources(), REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.gpu"]:
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for module in TOOL_MODULE.findall(text):
            named += 1
            if not _module_exists(module):
                missing.append(f"{path.relative_to(REPO)}: python -m {module}")
        for name in TOOL_FILE.findall(text):
            named += 1
            if not (REPO / name).is_file():
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert named > 50, f"only {named} tool names found: is the pattern still right?"
    assert not missing, "\n".join(missing)


def test_no_reference_to_the_old_scripts_folder() -> None:
    """The tools moved from scripts/ to the workbench package; nothing names the old paths."""
    old = re.compile(r"(?<![\w/.-])scripts/\w+\.(?:py|sh)|\bfrom scripts\b|\bscripts\.\w+ import")
    hits = []
    for path in [*_sources(), REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.gpu"]:
        if path.is_file() and path != Path(__file__).resolve():
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if old.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
