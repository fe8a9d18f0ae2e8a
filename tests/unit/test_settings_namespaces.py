"""RC_NAMESPACES as Kopf reads it: a list of namespaces is a union, an exclusion is one pattern."""

from kopf._cogs.structs.references import match_namespace

from reliability_center.operator.settings import namespace_patterns


def watched(value: str, name: str) -> bool:
    return any(match_namespace(name, pattern) for pattern in namespace_patterns(value))


def test_a_list_of_namespaces_watches_each_of_them():
    assert namespace_patterns("shop, billing") == ("shop", "billing")
    assert watched("shop,billing", "billing") and watched("shop,billing", "shop") and not watched("shop,billing", "x")
    assert not match_namespace("billing", "shop,billing")  # why: one Kopf pattern would miss it


def test_a_pattern_with_an_exclusion_stays_one_pattern():
    assert namespace_patterns("shop-*,!shop-pr-*") == ("shop-*,!shop-pr-*",)
    assert watched("shop-*,!shop-pr-*", "shop-live") and not watched("shop-*,!shop-pr-*", "shop-pr-1")
    assert namespace_patterns("") == ()
