"""uv.lock is what setup, CI, the demo and the image install: it agrees with pyproject.toml, and the venv the
tests run in holds exactly the versions it records (hack/setup-venv.sh installs it with `uv sync --locked`)."""

from __future__ import annotations

import importlib.metadata
import pathlib
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[2]


def locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_every_declared_dependency_is_locked_at_a_version_pyproject_allows() -> None:
    pins = locked()
    wrong = {str(r): pins.get(canonicalize_name(r.name)) for r in declared()
             if pins.get(canonicalize_name(r.name)) is None or not r.specifier.contains(pins[canonicalize_name(r.name)],
                                                                                         prereleases=True)}
    assert not wrong, f"uv.lock disagrees with pyproject.toml (run `make lock`): {wrong}"


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    for requirement in declared():  # every declared dependency is installed
        assert canonicalize_name(requirement.name) in installed, f"{requirement.name} is not installed"
    drift = {name: (version, pins[name]) for name, version in installed.items()
             if name in pins and version != pins[name]}
    assert not drift, f"installed (left) differs from uv.lock (right): {drift}; run `make setup`"


def test_the_image_the_chart_and_kustomize_install_is_this_version_built_from_the_lock() -> None:
    import yaml

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "charts/reliability-center/Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts/reliability-center/values.yaml").read_text())
    kustomize = yaml.safe_load((ROOT / "manifests/default/kustomization.yaml").read_text())
    assert chart["appVersion"] == version and values["image"]["tag"] in ("", version)
    assert {i["name"]: i["newTag"] for i in kustomize["images"]}["reliability-center"] == version
    dockerfile = (ROOT / "Dockerfile").read_text()
    setup = (ROOT / "hack/setup-venv.sh").read_text()
    uv_pin = next(line.split("=", 1)[1] for line in setup.splitlines() if line.startswith("UV_VERSION="))
    assert f"uv=={uv_pin}" in dockerfile and "uv sync --locked" in dockerfile and "COPY pyproject.toml uv.lock" in dockerfile
