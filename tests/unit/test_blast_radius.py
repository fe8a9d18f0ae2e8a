"""blast-radius's reading of Prometheus' answer, and its fallback to signal labels saying why."""

from types import SimpleNamespace

from reliability_center.actions.blast_radius import BlastParams, run
from reliability_center.engine.measure import Answer, Sample
from tests.unit.factories import incident

SIGNALS = [{"source": "am", "name": "latency", "labels": {"tenant": "acme", "module": "search"}}]


class Source:
    def __init__(self, answer: Answer):
        self.answer, self.asked = answer, []

    def query(self, promql: str) -> Answer:
        self.asked.append(promql)
        return self.answer


def context(answer: Answer | None) -> SimpleNamespace:
    return SimpleNamespace(incident=incident(signals=SIGNALS), tenant="acme", namespace="ns",
                           read=SimpleNamespace(list=lambda kind, namespace: []),
                           metrics=Source(answer) if answer else None)


def test_what_prometheus_answers_names_the_breaching_tenants_and_modules():
    ctx = context(Answer((Sample({"tenant": "acme", "module": "search"}, 1.7),
                          Sample({"tenant": "globex", "module": "search"}, 0.2))))
    result = run(ctx, BlastParams(query="p99", threshold=0.8))
    assert ctx.metrics.asked == ["p99"]
    assert result.evidence["source"] == "prometheus" and result.evidence["series"] == 2
    assert result.evidence["breaching"]["tenant"] == {"acme": {"value": 1.7, "excess": 0.9}}
    assert "tenants acme, modules search above 0.8" in result.message


def test_without_an_answer_the_signal_labels_stand_in_and_the_evidence_says_why():
    result = run(context(Answer(None, "Prometheus at http://p did not answer: refused")),
                 BlastParams(query="p99", threshold=0.8))
    assert result.evidence["source"] == "signals" and result.evidence["signalsByTenant"] == {"acme": 1}
    assert result.evidence["prometheus"] == "no answer: Prometheus at http://p did not answer: refused"
    assert result.message.startswith("blast radius (signal labels: no answer:")


def test_a_step_without_a_query_counts_signal_labels_and_says_prometheus_was_not_asked():
    ctx = context(Answer(()))
    result = run(ctx, BlastParams())
    assert ctx.metrics.asked == [] and result.evidence["prometheus"] == "not asked: the step names no query"
