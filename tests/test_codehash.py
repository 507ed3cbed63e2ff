import ast
import shutil
from pathlib import Path

import pytest

from attnrank import codehash
from attnrank.attention import methods
from attnrank.codehash import import_closure, registry_code_hash, script_code_hash, source_hash
from helpers import REPO, stdlib_import_closure

A = '''
def f(x):
    """Doc."""
    # a comment
    return x + 1
'''
B = '''
def f(x):
    """Other doc."""
    return x + 1  # another comment
'''
C = '''
def f(x):
    return x + 2
'''
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
PKG = Path(codehash.__file__).parent


def test_comments_and_docstrings_do_not_count():
    assert source_hash(A) == source_hash(B)


def test_logic_counts():
    assert source_hash(A) != source_hash(C)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_closure_follows_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nfrom . import b\n\ndef f():\n    from .sub.c import g\n    return g\n",
        "pkg/b.py": "def h():\n    if True:\n        import pkg.d as d\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..e import x\n",
        "pkg/d.py": "", "pkg/e.py": "x = 1\n", "pkg/unused.py": "",
        "script.py": "import numpy\nfrom pkg import a\n",
    })
    got = set(import_closure(tmp_path / "script.py", package_dir=pkg))
    assert got == {"pkg", "pkg.a", "pkg.b", "pkg.d", "pkg.sub", "pkg.sub.c", "pkg.e"}
    h = script_code_hash(tmp_path / "script.py", package_dir=pkg)
    (pkg / "unused.py").write_text("y = 2\n")
    (pkg / "e.py").write_text("x = 1  # a comment\n")
    assert script_code_hash(tmp_path / "script.py", package_dir=pkg) == h
    (pkg / "e.py").write_text("x = 2\n")  # reached only through a function-level relative import
    assert script_code_hash(tmp_path / "script.py", package_dir=pkg) != h


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_closure_of_every_script_equals_the_standard_librarys_scan(script):
    assert set(import_closure(script)) == stdlib_import_closure(PKG.parent, script=script)


def test_closure_of_every_module_equals_the_standard_librarys_scan():
    for path in sorted(PKG.rglob("*.py")):
        name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        assert set(import_closure(modules=[name])) == stdlib_import_closure(PKG.parent, module=name), name


# ---------------------------------------------------------------------------------------------- per-method hashes
def edit_function(path: Path, name: str) -> None:
    """Append a statement to the body of top-level function ``name``."""
    lines = path.read_text().split("\n")
    node = next(n for n in ast.parse("\n".join(lines)).body if isinstance(n, ast.FunctionDef) and n.name == name)
    indent = " " * node.body[-1].col_offset
    lines.insert(node.end_lineno, f"{indent}_code_probe = 1")
    path.write_text("\n".join(lines))


@pytest.fixture()
def pkg_copy(tmp_path):
    dst = tmp_path / "src" / "attnrank"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "rerank_attention.py"
    shutil.copy2(REPO / "workflow" / "scripts" / "rerank_attention.py", script)
    return dst, script


def method_hashes(pkg: Path, script: Path) -> dict[str, str]:
    return {k: registry_code_hash(script, methods.METHODS, k, package_dir=pkg) for k in methods.METHODS}


@pytest.mark.parametrize(
    "function, changed",
    [
        ("icr", {"icr"}),  # one method's own function: that method only
        ("selective", {"selective"}),
        ("headrank", {"headrank"}),
        ("_sum", {"icr", "selective"}),  # a helper only these two methods call
        ("_heads_method", set(methods.METHODS)),  # qr/core come from a factory: shared code
        ("aggregate", set(methods.METHODS)),  # used by every method
        ("layer_cut", set(methods.METHODS)),
    ],
)
def test_editing_a_method_reruns_that_method_and_shared_code_reruns_all(pkg_copy, function, changed):
    pkg, script = pkg_copy
    before = method_hashes(pkg, script)
    edit_function(pkg / Path(methods.__file__).relative_to(PKG), function)
    after = method_hashes(pkg, script)
    assert {k for k in before if before[k] != after[k]} == changed


def test_method_hash_covers_the_script_and_every_module_it_imports(pkg_copy):
    pkg, script = pkg_copy
    before = method_hashes(pkg, script)
    for path in sorted(import_closure(script, package_dir=pkg).values()) + [script]:
        text = path.read_text()
        path.write_text(text + "\n_code_probe = 1\n")
        after = method_hashes(pkg, script)
        assert all(after[k] != before[k] for k in before), path.name
        path.write_text(text + "\n# a comment\n")
        assert registry_code_hash(script, methods.METHODS, "icr", package_dir=pkg) == before["icr"], path.name
        path.write_text(text)
    assert method_hashes(pkg, script) == before

