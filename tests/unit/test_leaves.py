from reliability_center.gateway.leaves import ABSENT, digest, leaves, read


def test_leaves_flatten_an_apply_body_without_its_identity():
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n",
                                                                  "annotations": {"a/b": "1"}},
            "data": {"k": "v"}, "spec": {"list": [1, 2]}}
    assert leaves(body) == {"/metadata/annotations/a~1b": "1", "/data/k": "v", "/spec/list": [1, 2]}


def test_read_follows_escaped_pointers_and_reports_absence():
    obj = {"metadata": {"annotations": {"a/b": "1"}}, "spec": {"items": [{"x": 1}]}}
    assert read(obj, "/metadata/annotations/a~1b") == "1"
    assert read(obj, "/spec/items/0/x") == 1
    assert read(obj, "/spec/missing") == ABSENT
    assert read(None, "/spec") == ABSENT


def test_digest_is_stable_and_order_independent():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest({}).startswith("sha256:")
