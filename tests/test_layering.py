"""The pure layers (isa/, btf/, obj/) never reach the OS-facing ones or ctypes/mmap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "bpfarena"
PURE = ("isa", "btf", "obj")
FORBIDDEN_TOP = {"ctypes", "mmap", "fcntl", "socket"}
FORBIDDEN_PKG = {"_sys", "kernel", "vm"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported by `path` (relative imports resolved to bpfarena.*)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        pkg = parts
    else:
        pkg = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if not node.module:
                    out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
                    continue
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _bad(name: str) -> bool:
    parts = name.split(".")
    if parts[0] in FORBIDDEN_TOP:
        return True
    return parts[0] == "bpfarena" and len(parts) > 1 and parts[1] in FORBIDDEN_PKG


@pytest.mark.parametrize("layer", PURE)
def test_pure_layer_sources_import_nothing_impure(layer):
    files = sorted((PKG / layer).rglob("*.py"))
    assert files, f"{layer}/ has no modules"
    bad = [f"{f.relative_to(PKG)}:{line}: {name}" for f in files for line, name in _imports(f)
           if _bad(name)]
    assert bad == []


def test_resolver_sees_relative_imports():
    """Guard the guard: a relative import of ..kernel from obj/ is caught."""
    assert _bad("bpfarena.kernel.loader") and _bad("ctypes") and not _bad("bpfarena.btf")
    reader = PKG / "obj" / "reader.py"
    names = {n for _, n in _imports(reader)}
    assert "bpfarena.btf" in names or any(n.startswith("bpfarena.btf.") for n in names)


def test_pure_layers_load_without_impure_modules():
    code = (
        "import sys, json\n"
        "import bpfarena.isa, bpfarena.btf, bpfarena.obj\n"
        "import bpfarena.obj.reader, bpfarena.obj.elf, bpfarena.obj.maps, bpfarena.obj.link\n"
        "import pkgutil, importlib\n"
        "for pkg in (bpfarena.isa, bpfarena.btf, bpfarena.obj):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert sorted(m for m in mods if _bad(m)) == []
