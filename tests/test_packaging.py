"""pyproject.toml and environment.yml declare the same packages; the README's commands are first."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    return {_name(r) for r in reqs}


def environment_packages() -> set[str]:
    names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s+- ([A-Za-z0-9_.\-]+)", line.split("#")[0])
        if m and m.group(1) not in ("python", "pip", "conda-forge"):
            names.add(_name(m.group(1)))
    return names


def test_pyproject_and_environment_yml_agree():
    assert pyproject_packages() == environment_packages()


def test_every_environment_package_says_what_uses_it():
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\s+- [a-z]", line) and not re.match(r"^\s+- (python|pip)\b", line) and "conda-forge" not in line:
            assert "#" in line, f"environment.yml: no comment on {line.strip()!r}"


def test_requirements_have_lower_bounds_only():
    for requirement in (ROOT / "pyproject.toml").read_text().split("dependencies")[1:]:
        assert "==" not in requirement and "<" not in requirement.split("[tool")[0]


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"^make \w+", text, flags=re.M)
    assert commands[:2] == ["make course", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_importing_the_kit_does_not_load_tensorflow():
    import subprocess
    import sys

    code = ("import sys, hematolib, hematolib.data, hematolib.splits, hematolib.pipelines, hematolib.images, "
            "hematolib.download; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_data_file_of_the_library_is_declared_package_data():
    # without it a pip install (Colab) would lose originals.csv and group images by file name
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hematolib"])
    data_files = {p.name for p in (ROOT / "hematolib").iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data_files and data_files <= declared
