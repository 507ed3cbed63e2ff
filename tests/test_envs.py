"""envs/attnrank.yaml (the conda environment of every rule, `--sdm conda`) stays equal to pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "envs" / "attnrank.yaml"


def _env() -> tuple[dict[str, str], list[str], list[str]]:
    """({conda package: spec}, pip lines, channels) of the environment file."""
    env = yaml.safe_load(ENV.read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            name, spec = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", dep).groups()
            conda[name] = spec
    return conda, pip, env["channels"]


def test_pip_dependencies_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = {Requirement(r).name.lower().replace("_", "-"): Requirement(r) for r in project["dependencies"]}
    _, pip, _ = _env()
    got = {Requirement(r).name.lower().replace("_", "-"): Requirement(r) for r in pip if not r.startswith("-")}
    assert got.keys() == want.keys(), (sorted(got.keys() - want.keys()), sorted(want.keys() - got.keys()))
    for name, req in want.items():
        assert got[name].specifier == req.specifier, (name, str(got[name].specifier), str(req.specifier))


def test_python_java_and_the_package_itself():
    conda, pip, channels = _env()
    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert conda["python"].lstrip("=") in requires
    java = re.match(r">=\s*(\d+)", conda["openjdk"])
    assert java and int(java.group(1)) >= 21  # pyserini 1.x (Anserini) needs Java 21
    assert "pip" in conda and "conda-forge" in channels
    editable = [r for r in pip if r.startswith("-e")]
    assert len(editable) == 1 and (ENV.parent / editable[0].split()[1]).resolve() == ROOT


def test_every_rule_that_runs_code_uses_the_environment():
    """Every rule with script/shell/run names the environment (common.smk's CONDA_ENV points at the file)."""
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    rel = re.search(r'^CONDA_ENV = "([^"]+)"', common, re.M).group(1)
    assert (ROOT / "workflow" / "rules" / rel).resolve() == ENV.resolve()
    missing, checked = [], 0
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"(?ms)^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text()):
            name, body = m.groups()
            if re.search(r"^    (script|shell|run):", body, re.M):
                checked += 1
                if not re.search(r"^    conda:\n\s+CONDA_ENV", body, re.M):
                    missing.append(f"{smk.name}:{name}")
    assert checked >= 15 and not missing, (checked, missing)
