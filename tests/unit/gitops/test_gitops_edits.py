"""Comment-preserving edits: each test checks the exact lines the diff touches."""

from __future__ import annotations

import difflib

import pytest

from reliability_center.gitops.edits import (
    EditError,
    apply_change,
    changed_bytes,
    changed_lines,
    guess_indent,
    json_equal,
    parse_yaml_path,
    unified_diff,
)

DEPLOYMENT = """\
# The web tier. Owned by team storefront.
apiVersion: apps/v1   # keep v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: "front"}
# spec below is tuned for peak
spec:
  replicas: 3 # black friday: 12
  template:
    spec:
      containers:
        - name: web
          image: 'nginx:1.25'
          args: ["--a", "--b"]
          env:
            - name: MODE
              value: "fast"
# end of file
"""


def touched(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) of the diff."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_set_value_changes_one_line_and_keeps_its_comment():
    out = apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.replicas", value=5)
    assert touched(DEPLOYMENT, out) == (["  replicas: 3 # black friday: 12"], ["  replicas: 5 # black friday: 12"])


def test_set_value_in_a_list_keeps_quote_style():
    out = apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.template.spec.containers[0].image",
                       value="nginx:1.26")
    assert touched(DEPLOYMENT, out) == (["          image: 'nginx:1.25'"], ["          image: 'nginx:1.26'"])


def test_set_value_adds_a_new_subtree_before_trailing_comments():
    out = apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.template.spec.containers[0].resources",
                       value={"limits": {"cpu": "1"}})
    removed, added = touched(DEPLOYMENT, out)
    assert removed == []
    assert added == ["          resources:", "            limits:", "              cpu: '1'"]
    assert out.endswith("# end of file\n")  # the file's last comment stays last


def test_set_value_creates_missing_mappings_where_the_comment_lines_stay_with_the_next_key():
    out = apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path='metadata.annotations["app.kubernetes.io/x"]',
                       value="y")
    assert touched(DEPLOYMENT, out) == ([], ["  annotations:", "    app.kubernetes.io/x: y"])
    lines = out.splitlines()
    assert lines[lines.index("# spec below is tuned for peak") + 1] == "spec:"


def test_unchanged_value_is_a_noop_byte_for_byte():
    assert apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.replicas", value=3) == DEPLOYMENT


def test_merge_patch_rfc7386_sets_and_deletes():
    out = apply_change("d.yaml", DEPLOYMENT, "mergePatch",
                       patch={"spec": {"replicas": None, "paused": True}, "metadata": {"name": "web"}})
    removed, added = touched(DEPLOYMENT, out)
    assert removed == ["  replicas: 3 # black friday: 12"]
    assert added == ["  paused: true"]
    assert "# end of file" in out


def test_merge_patch_replaces_lists_whole():
    out = apply_change("d.yaml", DEPLOYMENT, "mergePatch",
                       patch={"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "api:2"}]}}}})
    assert "- name: web" not in out and "image: api:2" in out
    assert "# end of file" in out


def test_deleting_a_key_keeps_the_comment_that_described_the_next_one():
    text = "a:\n  first: 1  # one\n  # about second\n  second: 2\nb: 1\n"
    out = apply_change("x.yaml", text, "mergePatch", patch={"a": {"first": None}})
    assert out == "a:\n  # about second\n  second: 2\nb: 1\n"


def test_json_patch_add_remove_test_move():
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "X", "value": "1"}},
        {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/layer"},
        {"op": "remove", "path": "/kind"},
    ]
    out = apply_change("d.yaml", DEPLOYMENT, "jsonPatch", patch=ops)
    removed, added = touched(DEPLOYMENT, out)
    assert removed == ["kind: Deployment", '  labels: {app: web, tier: "front"}']
    assert added == ['  labels: {app: web, layer: "front"}', "            - name: X", "              value: '1'"]


def test_json_patch_insert_in_the_middle_keeps_comment_with_its_item():
    text = "list:\n- x   # x\n# about y\n- y\n"
    out = apply_change("x.yaml", text, "jsonPatch", patch=[{"op": "add", "path": "/list/1", "value": "w"}])
    assert out == "list:\n- x   # x\n- w\n# about y\n- y\n"


def test_json_patch_failed_test_aborts_with_the_path():
    with pytest.raises(EditError, match="test failed at '/spec/replicas'"):
        apply_change("d.yaml", DEPLOYMENT, "jsonPatch", patch=[
            {"op": "replace", "path": "/spec/replicas", "value": 9},
            {"op": "test", "path": "/spec/replicas", "value": 3}])


@pytest.mark.parametrize("first, second, equal", [
    (1, True, False),            # RFC 6902 §4.6: a boolean is never a number
    (0, False, False),
    (1.0, True, False),
    (None, False, False),
    (None, 0, False),
    ("1", 1, False),
    ("true", True, False),
    (1, 1.0, True),              # numbers are equal when numerically equal
    (-0.0, 0, True),
    (True, True, True),
    ({"a": 1, "b": [True, None]}, {"b": [True, None], "a": 1.0}, True),  # member order does not matter
    ({"a": 1}, {"a": True}, False),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ({}, [], False),
    ([1, True], [1, 1], False),  # arrays element by element, types included
    ([1, 2], [2, 1], False),
    ([[0]], [[False]], False),
    ([], [], True),
])
def test_json_equal_compares_type_and_value(first, second, equal):
    assert json_equal(first, second) is equal
    assert json_equal(second, first) is equal


@pytest.mark.parametrize("name, text", [("x.yaml", "a: true\n"), ("x.json", '{"a": true}\n')])
def test_json_patch_test_of_a_number_fails_against_a_boolean(name, text):
    for value in (1, 1.0):
        with pytest.raises(EditError, match=r"test failed at '/a': the test expects 1(\.0)? \(a number\); "
                                            "the document holds a boolean$"):
            apply_change(name, text, "jsonPatch", patch=[{"op": "test", "path": "/a", "value": value}])


@pytest.mark.parametrize("name, text", [("x.yaml", "a: 1\n"), ("x.json", '{"a": 1}\n')])
def test_json_patch_test_of_a_boolean_fails_against_a_number(name, text):
    with pytest.raises(EditError, match=r"the test expects true \(a boolean\); the document holds a number$"):
        apply_change(name, text, "jsonPatch", patch=[{"op": "test", "path": "/a", "value": True}])


def test_a_failed_test_does_not_quote_the_repository_value():
    # The message lands in the PatchPlan's status: the plan's own value is fine, the file's is not.
    with pytest.raises(EditError) as err:
        apply_change("x.yaml", "token: s3cr3t\n", "jsonPatch", patch=[{"op": "test", "path": "/token", "value": "x"}])
    assert "s3cr3t" not in str(err.value)
    assert str(err.value) == ("x.yaml: jsonPatch test failed at '/token': the test expects \"x\" (a string); "
                              "the document holds a different string")


@pytest.mark.parametrize("document, value", [
    ("a: 1\n", 1.0),
    ("a: 1.0\n", 1),
    ("a: {x: 1, y: [true, null]}\n", {"y": [True, None], "x": 1}),
    ("a: &flag true\nb: *flag\n", True),  # ruamel loads an anchored boolean as an int subclass
])
def test_json_patch_test_passes_for_equal_json_values(document, value):
    ops = [{"op": "test", "path": "/a", "value": value}, {"op": "add", "path": "/c", "value": 2}]
    assert apply_change("x.yaml", document, "jsonPatch", patch=ops).endswith("c: 2\n")


def test_json_patch_test_of_an_anchored_boolean_against_one_fails():
    with pytest.raises(EditError, match="the test expects 1 .a number.; the document holds a boolean"):
        apply_change("x.yaml", "a: &flag true\nb: *flag\n", "jsonPatch",
                     patch=[{"op": "test", "path": "/a", "value": 1}])


def test_json_patch_test_needs_a_value():
    # Without the rule, a missing value would compare as null and pass against `a: null`.
    with pytest.raises(EditError, match="jsonPatch test #0 needs 'value'"):
        apply_change("x.yaml", "a: null\n", "jsonPatch", patch=[{"op": "test", "path": "/a"}])


@pytest.mark.parametrize("old, new, expected", [
    ("a: 1\n", True, "a: true\n"),   # Python's == would call them equal and leave the file alone
    ("a: 0\n", False, "a: false\n"),
    ("a: true\n", 1, "a: 1\n"),
    ("a: 1\n", 1.0, "a: 1\n"),       # JSON calls them equal: no diff for a change of spelling
])
def test_set_value_tells_booleans_from_numbers(old, new, expected):
    assert apply_change("x.yaml", old, "setValue", yaml_path="a", value=new) == expected
    assert apply_change("x.yaml", old, "jsonPatch", patch=[{"op": "replace", "path": "/a", "value": new}]) == expected


def test_json_patch_move_onto_itself_changes_nothing():
    text = "a: 1  # one\n"
    assert apply_change("x.yaml", text, "jsonPatch", patch=[{"op": "move", "from": "", "path": ""}]) == text
    assert apply_change("x.yaml", text, "jsonPatch", patch=[{"op": "move", "from": "/a", "path": "/a"}]) == text
    with pytest.raises(EditError, match="no member 'b'"):
        apply_change("x.yaml", text, "jsonPatch", patch=[{"op": "move", "from": "/b", "path": "/b"}])


def test_json_patch_pointer_escapes():
    text = "metadata:\n  annotations:\n    a/b: '1'\n    c~d: '2'\n"
    out = apply_change("x.yaml", text, "jsonPatch", patch=[
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "3"},
        {"op": "remove", "path": "/metadata/annotations/c~0d"}])
    assert out == "metadata:\n  annotations:\n    a/b: '3'\n"


@pytest.mark.parametrize("ops, message", [
    ([{"op": "remove", "path": "/nope"}], "no member 'nope'"),
    ([{"op": "add", "path": "/spec/template/spec/containers/7", "value": 1}], "out of range"),
    ([{"op": "replace", "path": "spec"}], "must start with '/'"),
    ([{"op": "frobnicate", "path": "/spec"}], "unknown op"),
    ([{"path": "/spec"}], "needs 'op' and 'path'"),
    ([{"op": "add", "path": 5, "value": 1}], "JSON pointer 5 must be a string"),
    ([{"op": "copy", "from": None, "path": "/x"}], "JSON pointer None must be a string"),
])
def test_json_patch_errors_name_the_problem(ops, message):
    with pytest.raises(EditError, match=message):
        apply_change("d.yaml", DEPLOYMENT, "jsonPatch", patch=ops)


def test_create_file_is_idempotent_and_refuses_to_overwrite():
    assert apply_change("n.yaml", None, "createFile", content="a: 1\n") == "a: 1\n"
    assert apply_change("n.yaml", "a: 1\n", "createFile", content="a: 1\n") == "a: 1\n"
    with pytest.raises(EditError, match="already exists with different content"):
        apply_change("n.yaml", "a: 2\n", "createFile", content="a: 1\n")


def test_edit_of_a_missing_file_is_refused():
    with pytest.raises(EditError, match="does not exist"):
        apply_change("gone.yaml", None, "setValue", yaml_path="a", value=1)


def test_multi_document_files_are_refused_clearly():
    with pytest.raises(EditError, match="holds 2 YAML documents"):
        apply_change("m.yaml", "a: 1\n---\nb: 2\n", "setValue", yaml_path="a", value=3)


def test_invalid_yaml_is_reported_with_the_path():
    with pytest.raises(EditError, match="^bad.yaml: not valid YAML"):
        apply_change("bad.yaml", "a: [1, 2\n", "setValue", yaml_path="a", value=3)


def test_file_without_final_newline_keeps_it_that_way():
    text = "---\na: 1\nb: \"x\""
    out = apply_change("x.yaml", text, "setValue", yaml_path="b", value="y")
    assert out == "---\na: 1\nb: \"y\""


def test_reformatting_ruamel_would_do_is_not_in_the_diff():
    # ruamel re-spaces flow sequences ("[ 1,2 ]" -> "[1, 2]"); only the edited line may change.
    text = "a: [ 1,2 ]\nb:   7\nc: 1\n"
    out = apply_change("x.yaml", text, "setValue", yaml_path="c", value=2)
    assert out == "a: [ 1,2 ]\nb:   7\nc: 2\n"


def test_json_files_keep_their_indentation():
    text = '{\n    "a": 1,\n    "b": [1, 2]\n}\n'
    out = apply_change("x.json", text, "mergePatch", patch={"a": 2})
    assert out == '{\n    "a": 2,\n    "b": [1, 2]\n}\n'


@pytest.mark.parametrize("expr, steps", [
    ("a.b[0].c", ["a", "b", 0, "c"]),
    ('metadata.labels["app.kubernetes.io/name"]', ["metadata", "labels", "app.kubernetes.io/name"]),
    ("x['a.b'][-1]", ["x", "a.b", -1]),
])
def test_parse_yaml_path(expr, steps):
    assert parse_yaml_path(expr) == steps


@pytest.mark.parametrize("expr", ["", "a.", ".a", "a..b", "a[x]", "a[0]b"])
def test_parse_yaml_path_rejects(expr):
    with pytest.raises(EditError, match="bad yamlPath"):
        parse_yaml_path(expr)


def test_set_value_type_errors_name_the_location():
    with pytest.raises(EditError, match="spec.replicas is not a mapping; cannot go into spec.replicas.x"):
        apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.replicas.x.y", value=1)
    with pytest.raises(EditError, match=r"index 4 out of range at spec.template.spec.containers\[4\]"):
        apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path="spec.template.spec.containers[4]", value=1)


@pytest.mark.parametrize("text, expected", [
    ("a:\n  b:\n    - x\n", (2, 4, 2)),
    ("a:\n    b:\n    - x\n", (4, 4, 0)),
    ("a:\n  b:\n  - x\n", (2, 2, 0)),
    ("a: 1\n", (2, 2, 0)),
])
def test_guess_indent(text, expected):
    assert guess_indent(text) == expected


def test_unified_diff_and_counts():
    diff = unified_diff("f.yaml", "a: 1\n", "a: 2\n")
    assert diff.startswith("--- a/f.yaml\n+++ b/f.yaml\n")
    assert changed_lines(diff) == 2
    assert changed_bytes(diff) == 8  # "a: 1" and "a: 2", without markers or newlines
    assert unified_diff("n.yaml", None, "x\n").startswith("--- /dev/null\n+++ b/n.yaml")


def test_changed_bytes_count_utf8_and_every_hunk():
    before = "".join(f"k{i}: v\n" for i in range(20))
    after = before.replace("k0: v", "k0: é").replace("k19: v", "k19: w")
    diff = unified_diff("f.yaml", before, after)
    assert diff.count("@@ ") == 2
    assert changed_lines(diff) == 4
    assert changed_bytes(diff) == len("k0: v") + len("k0: é".encode()) + 2 * len("k19: v")


def test_changed_lines_that_look_like_file_headers_still_count():
    # "---" removed reads "----" and "++x" added reads "+++x": content, not headers, inside a hunk.
    diff = unified_diff("f.yaml", "---\na: 1\n", "a: 1\n++x\n")
    assert changed_lines(diff) == 2
    assert changed_bytes(diff) == 6


def test_missing_final_newline_marker_is_not_a_change():
    diff = unified_diff("f.yaml", "a: 1", "a: 2")
    assert "\\ No newline at end of file" in diff
    assert (changed_lines(diff), changed_bytes(diff)) == (2, 8)


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, node


def test_every_scalar_edit_touches_exactly_its_own_line():
    import yaml

    for yaml_path, old in _leaves(yaml.safe_load(DEPLOYMENT)):
        new = f"{old}-x" if isinstance(old, str) else 99
        out = apply_change("d.yaml", DEPLOYMENT, "setValue", yaml_path=yaml_path, value=new)
        removed, added = touched(DEPLOYMENT, out)
        assert len(removed) == 1 and len(added) == 1, (yaml_path, removed, added)
        assert str(new) in added[0], yaml_path
        assert yaml.safe_load(out) == _set(yaml.safe_load(DEPLOYMENT), yaml_path, new)


def _set(doc, yaml_path, value):
    steps = parse_yaml_path(yaml_path)
    node = doc
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value
    return doc


# --------------------------------------------------------------------------- alertThreshold

RULES = """# team rules
groups:
  - name: ocr  # the OCR playbook
    rules:
      - alert: OcrModelErrors
        expr: sum by (tenant) (increase(ocr_model_errors_total[10m])) > 3  # errors per 10 min
        labels: {category: ocr}
      - alert: QuotaLow
        expr: |
          max by (tenant) (quota_left)
          < 0.1
      - alert: Burn
        expr: (a > 14.4 * 0.05 and b > 14.4 * 0.05)
"""


def test_alert_threshold_moves_only_that_rules_number_and_keeps_every_comment():
    from reliability_center.gitops.edits import apply_change

    earlier = apply_change("rules.yaml", RULES, "alertThreshold", value={"alert": "OcrModelErrors", "factor": 0.8})
    diff = [ln for ln in difflib.unified_diff(RULES.splitlines(), earlier.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert diff == ["-        expr: sum by (tenant) (increase(ocr_model_errors_total[10m])) > 3  # errors per 10 min",
                    "+        expr: sum by (tenant) (increase(ocr_model_errors_total[10m])) > 2.4 # errors per 10 min"]
    # "<": fire earlier means a higher bound; a block scalar stays a block scalar.
    lower = apply_change("rules.yaml", RULES, "alertThreshold", value={"alert": "QuotaLow", "factor": 0.8})
    assert "  < 0.125\n" in lower and "expr: |\n" in lower and lower.count("\n") == RULES.count("\n")
    # No single number to move, or no such rule: the proposal leaves the file as it is.
    for alert in ("Burn", "NoSuchRule"):
        assert apply_change("rules.yaml", RULES, "alertThreshold", value={"alert": alert, "factor": 0.8}) == RULES


@pytest.mark.parametrize("value", [None, {"alert": "X"}, {"alert": "", "factor": 0.8}, {"alert": "X", "factor": 0},
                                   {"alert": "X", "factor": True}, {"alert": "X", "factor": 0.8, "extra": 1}])
def test_alert_threshold_refuses_a_change_that_says_no_alert_or_no_sane_factor(value):
    from reliability_center.gitops.edits import EditError, apply_change

    with pytest.raises(EditError, match="alertThreshold"):
        apply_change("rules.yaml", RULES, "alertThreshold", value=value)
