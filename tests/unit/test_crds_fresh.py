"""crds/ holds the CRDs generated from the pydantic models, byte for byte, and nothing else
ships its own copy: the kustomize install and the Helm chart point at these files."""

from __future__ import annotations

import os
import pathlib

from reliability_center.api.crd import crds, render

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "reliability-center" / "crds"
REGENERATE = "run `python -m reliability_center.api.crd` and commit crds/"


def test_crd_files_equal_what_the_models_generate() -> None:
    want = {name: render(name, crd).encode() for name, crd in crds().items()}
    have = {path.name: path.read_bytes() for path in CRDS.glob("*.yaml")}
    stale = sorted(name for name in want if name in have and have[name] != want[name])
    missing = sorted(want.keys() - have.keys())
    extra = sorted(have.keys() - want.keys())
    assert not (stale or missing or extra), (
        f"crds/ is out of date with the models (stale: {stale}, missing: {missing}, "
        f"not generated: {extra}): {REGENERATE}")


def test_the_chart_crds_are_links_to_the_generated_files() -> None:
    names = sorted(crds())
    assert sorted(p.name for p in CHART_CRDS.iterdir()) == names
    for name in names:
        link = CHART_CRDS / name
        assert link.is_symlink(), f"{link} must be a symlink to crds/{name} (one source), not a copy"
        assert pathlib.Path(os.path.realpath(link)) == (CRDS / name).resolve()


def test_kustomize_lists_every_generated_crd() -> None:
    import yaml

    kustomization = yaml.safe_load((CRDS / "Kustomization").read_text())
    assert sorted(kustomization["resources"]) == sorted(crds())
