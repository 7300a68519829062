"""The documentation is true: every ```python block of docs/guide.md and README.md runs.

Each block runs on its own (a fresh namespace) in a scratch directory holding a copy of
examples/ and the C files the guide shows (a ```c block whose first line is `// name.bpf.c`), so
relative paths in the snippets work as they would in a checkout. A block that names
`backend="kernel"` needs the kernel (the `kernel` fixture); the others run anywhere.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
DOCS = [GUIDE, README]
INCLUDE = ROOT / "src" / "bpfarena" / "include"

_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_C_NAME = re.compile(r"^//\s*([\w.-]+\.bpf\.c)\b")


def fenced(path: Path, lang: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in `lang`."""
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) == lang:
            out.append((text.count("\n", 0, m.start()) + 1, m.group(2)))
    return out


def guide_c_files() -> dict[str, str]:
    """The C programs the guide shows, by the file name on their first line."""
    files = {}
    for _line, code in fenced(GUIDE, "c"):
        m = _C_NAME.match(code)
        if m:
            files[m.group(1)] = code
    return files


SNIPPETS = [(p.relative_to(ROOT).as_posix(), line, code) for p in DOCS
            for line, code in fenced(p, "python")]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("*.o", "__pycache__"))
    for name, code in guide_c_files().items():
        (tmp_path / name).write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BPFARENA_QUIET", "1")
    return tmp_path


def test_docs_have_snippets() -> None:
    assert len(fenced(GUIDE, "python")) >= 10
    assert fenced(README, "python")
    assert {"hello.bpf.c", "faults.bpf.c"} <= set(guide_c_files())


@pytest.mark.parametrize(("doc", "line", "code"), SNIPPETS,
                         ids=[f"{d}:{n}" for d, n, _ in SNIPPETS])
def test_snippet_runs(doc: str, line: int, code: str, workdir: Path,
                      request: pytest.FixtureRequest) -> None:
    if 'backend="kernel"' in code:
        request.getfixturevalue("kernel")
    namespace = {"__name__": f"snippet_{line}"}
    exec(compile(code, f"{doc}:{line}", "exec"), namespace)  # noqa: S102 - the docs' own code


@pytest.mark.parametrize("name", sorted(guide_c_files()))
def test_guide_c_compiles_and_loads(name: str, workdir: Path) -> None:
    import bpfarena

    obj_path = bpfarena.compile(workdir / name, output=workdir / "check.bpf.o")
    spec = bpfarena.ObjectSpec.from_file(obj_path)
    assert spec.programs
    with bpfarena.load(spec, backend="vm") as obj:
        assert set(obj.programs) == set(spec.programs)


def test_guide_names_exist() -> None:
    """Header and library names the guide mentions exist in the headers or the package."""
    spans = re.findall(r"`([^`]+)`", _FENCE.sub("", GUIDE.read_text()))
    names = {n for span in spans for n in re.findall(
        r"\b(?:arena_|bpfarena_|BPFARENA_|ARENA_|bpf_arena_|bpf_alloc\b|bpf_free\b)\w*", span)}
    assert len(names) > 20
    sources = [*INCLUDE.glob("*.h"), *(ROOT / "src" / "bpfarena").rglob("*.py"),
               ROOT / "tests" / "conftest.py"]
    haystack = "\n".join(p.read_text() for p in sources)
    haystack += "\n".join(guide_c_files().values())
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", haystack))
    assert not missing, f"the guide names things that do not exist: {missing}"


def test_cli_doc_matches_parser() -> None:
    """docs/cli.md lists every subcommand, and only options the parser has."""
    from bpfarena.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    rows = re.findall(r"^\| `bpfarena (\w+)([^`]*)` \|", CLI_DOC.read_text(), re.M)
    assert sorted(c for c, _ in rows) == sorted(sub.choices)
    for cmd, usage in rows:
        opts = {o for a in sub.choices[cmd]._actions for o in a.option_strings}
        flags = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage)
        assert set(flags) <= opts, (cmd, flags, opts)


def test_cli_as_documented(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """cc prints the object's path, inspect lists programs, run -b vm prints retval and output."""
    from bpfarena.cli import main

    assert main(["cc", "hello.bpf.c", "-o", "hello.bpf.o"]) == 0
    assert capsys.readouterr().out.strip().endswith("hello.bpf.o")
    assert main(["inspect", "-d", "hello.bpf.o"]) == 0
    out = capsys.readouterr().out
    assert "program add_points: section=syscall type=31 sleepable=True" in out
    assert "addr_space_cast" in out and "map arena: type=33" in out
    assert main(["run", "-b", "vm", "-p", "add_points", "hello.bpf.o"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("add_points: retval=3 duration_ns=") and "npoints=3" in out
    assert main(["run", "-b", "vm", "missing.bpf.o"]) == 1
    assert capsys.readouterr().err.startswith("bpfarena: error: ")
