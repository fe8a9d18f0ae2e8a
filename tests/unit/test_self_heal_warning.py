"""The warning that Argo CD's self-heal may undo a step's write (operator/step.warn_self_heal), from the object
as the step listed it before writing: no read of the written object again (in a storm, a shared flags store
read back whole once per step)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from reliability_center.api.incident import TimelineEntry
from reliability_center.gateway import Ref
from reliability_center.gateway.tracking import ARGO_NAMESPACE, TRACKING_ANNOTATION
from reliability_center.operator.step import warn_self_heal

TARGET = "ConfigMap/app/flags-search"
STORE = {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "flags-search", "namespace": "app",
                      "annotations": {TRACKING_ANNOTATION: "shop:/ConfigMap:app/flags-search"}}}
APPLICATION = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
               "metadata": {"name": "shop", "namespace": ARGO_NAMESPACE},
               "spec": {"syncPolicy": {"automated": {"selfHeal": True}}}}


class Reads:
    """The apiserver: the Application only; a read of the written store fails the test."""

    def __init__(self) -> None:
        self.asked: list[Ref] = []

    def get(self, ref: Ref) -> dict[str, Any] | None:
        self.asked.append(ref)
        assert ref.kind == "Application", f"{ref} read again after the step listed it"
        return APPLICATION


class Draft:
    def __init__(self) -> None:
        self.conditions: list[tuple[str, str, str]] = []
        self.notes: list[str] = []

    def condition(self, type_: str, status: str, reason: str, message: str = "") -> None:
        self.conditions.append((type_, status, reason))

    def note(self, event: str, message: str = "", step: str | None = None) -> None:
        self.notes.append(event)


def test_a_write_on_an_object_argo_cd_self_heals_is_warned_from_the_object_as_the_step_listed_it():
    ctx = SimpleNamespace(step=SimpleNamespace(name="flags"), planned_on={TARGET: STORE},
                          entries=[TimelineEntry(time="t", event="feature-flags-off:applied", target=TARGET)])
    draft, reads = Draft(), Reads()
    warn_self_heal(draft, reads, ctx)  # type: ignore[arg-type]
    assert draft.conditions == [("SelfHealSafe", "False", "IgnoreDifferencesMissing")]
    assert draft.notes == ["argocd:will-revert"]
    assert reads.asked == [Ref("Application", ARGO_NAMESPACE, "shop")]
