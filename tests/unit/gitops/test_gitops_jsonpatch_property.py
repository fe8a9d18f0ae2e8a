"""Property: the repository edit ``jsonPatch`` agrees with the ``jsonpatch`` library (RFC 6902).

Hypothesis draws a JSON document and a short patch whose operations aim at
locations that exist, locations that do not (new keys, indexes past the end,
``-``, a leading zero, below a scalar) and at ``test`` values that Python's
``==`` confuses with the real one (``true`` for ``1``, ``1.0`` for ``1``). The
project's result must be the library's: the same document when both apply the
patch, a refusal from both when either refuses. The library is the oracle
because it implements RFC 6902 §4.6's equality (a boolean is never a number).

The one deliberate difference (an empty YAML document is edited as an empty
mapping) is excluded from the YAML property by name, in ``empty_yaml_document``,
which says why, with the RFC section. The JSON property excludes nothing.

``EXAMPLES`` pins the RFC corners so that every run checks them, and those
examples alone must reach every case in ``MUST_COVER``, so that no change of
what Hypothesis draws can quietly stop testing booleans against numbers.
"""

from __future__ import annotations

import copy
import functools
import io
import json
from typing import Any

import jsonpatch
import jsonpointer
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reliability_center.gitops.edits import EditError, apply_change

#: Deterministic and quick: the same examples on every run, no example database on disk.
SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- documents

#: Keys that need RFC 6901 escapes (``~0``, ``~1``), look like indexes, or like the ``-`` marker.
KEYS = st.sampled_from(["a", "b", "c", "a/b", "m~n", "~1", "0", "1", "-", ""]) | st.text("abxy", max_size=3)

#: 0 and 1 are where Python's ``==`` confuses numbers with booleans, so they come often.
NUMBERS = (st.sampled_from([0, 1, 0.0, 1.0, -1, 2])
           | st.integers(-1000, 1000)
           | st.floats(allow_nan=False, allow_infinity=False, width=32))

SCALARS = st.none() | st.booleans() | NUMBERS | st.text("ab1 ~/", max_size=4)


@functools.cache
def documents(scalars: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    """Nested objects and arrays (mostly) with the scalars above at the leaves.

    Cached: building and validating a recursive strategy costs more than drawing from it.
    """
    nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)
    containers = st.dictionaries(KEYS, nested, min_size=1, max_size=5) | st.lists(nested, min_size=1, max_size=4)
    return st.one_of(containers, containers, containers, nested)


# --------------------------------------------------------------------------- patches


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer(parts: list[str]) -> str:
    return "".join("/" + _escape(part) for part in parts)


def existing(doc: Any, parts: list[str] | None = None) -> list[tuple[list[str], Any]]:
    """Every location in ``doc`` with its value, the whole document first."""
    parts = parts or []
    out = [(parts, doc)]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += existing(value, parts + [key])
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += existing(value, parts + [str(index)])
    return out


def missing(doc: Any) -> list[list[str]]:
    """Locations that do not exist yet: where ``add`` may create and everything else must refuse."""
    out: list[list[str]] = [["nope"], ["nope", "deeper"]]
    for parts, value in existing(doc):
        if isinstance(value, dict):
            out.append(parts + ["new"])
        elif isinstance(value, list):
            out += [parts + [str(len(value))], parts + [str(len(value) + 1)], parts + ["-"], parts + ["x"]]
            if value:
                out.append(parts + ["00"])  # RFC 6901 §4: no leading zeros
        else:
            out.append(parts + ["below-a-scalar"])
    return out


def twins(value: Any) -> st.SearchStrategy[Any]:
    """A value of another JSON or Python type that Python's ``==`` calls equal to ``value``.

    A boolean comes back as 0/1 or 0.0/1.0 (JSON: not equal), a 0 or 1 as a
    boolean (not equal), an integral number as the other of int and float
    (JSON: equal); objects come back with their members in reverse order (equal)
    and containers with twins inside. A value without a twin comes back as is.
    """
    if isinstance(value, bool):
        return st.sampled_from([int(value), float(value)])
    if isinstance(value, (int, float)):
        options: list[Any] = [bool(value)] if value in (0, 1) else []
        if value == int(value):
            options.append(float(value) if isinstance(value, int) else int(value))
        return st.sampled_from(options) if options else st.just(value)
    if isinstance(value, dict):
        items = list(value.items())
        return st.tuples(*(twins(v) for _, v in items)).map(
            lambda vs: dict(reversed([(k, v) for (k, _), v in zip(items, vs)])))
    if isinstance(value, list):
        return st.tuples(*(twins(v) for v in value)).map(list)
    return st.just(value)


@st.composite
def operation(draw: st.DrawFn, doc: Any, scalars: st.SearchStrategy[Any]) -> dict[str, Any]:
    """One operation against ``doc`` as it is now: existing or missing paths, tests with tricky values."""
    here = existing(doc)
    # two draws in three aim at a location that exists: most operations should apply
    somewhere = st.sampled_from([parts for parts, _ in here]) | st.sampled_from([parts for parts, _ in here]) \
        | st.sampled_from(missing(doc))
    kind = draw(st.sampled_from(["test", "add", "remove", "replace", "move", "copy", "test"]))
    if kind == "test":
        # half the tests aim at a boolean or a number, where Python's == and JSON's disagree
        numeric = [(parts, value) for parts, value in here if isinstance(value, (bool, int, float))]
        parts, value = draw(st.sampled_from(numeric) | st.sampled_from(here) if numeric else st.sampled_from(here))
        value = draw(twins(value) | twins(value) | st.just(value) | documents(scalars))
        return {"op": "test", "path": _pointer(parts), "value": value}
    path = _pointer(draw(somewhere))
    if kind in ("move", "copy"):
        return {"op": kind, "from": _pointer(draw(somewhere)), "path": path}
    if kind == "remove":
        return {"op": kind, "path": path}
    return {"op": kind, "path": path, "value": draw(documents(scalars))}


@st.composite
def doc_and_patch(draw: st.DrawFn, scalars: st.SearchStrategy[Any] = SCALARS) -> tuple[Any, list[dict[str, Any]]]:
    """A document and up to four operations, each drawn against the document the previous ones left.

    Drawing against the current state (computed with the library) keeps later
    operations aimed at locations that exist then; once an operation fails,
    the patch is over, so nothing more is drawn.
    """
    doc = draw(documents(scalars))
    ops: list[dict[str, Any]] = []
    current = doc
    for _ in range(draw(st.sampled_from([3, 2, 4, 1]))):
        op = draw(operation(current, scalars))
        ops.append(op)
        outcome = theirs(current, [op])
        if outcome[0] == "refused":
            break
        current = outcome[1]
    return doc, ops


# --------------------------------------------------------------------------- the two implementations

Outcome = tuple[str, Any]  # ("applied", document) or ("refused", reason)


def theirs(doc: Any, ops: list[dict[str, Any]]) -> Outcome:
    """The ``jsonpatch`` library's verdict; copies, because it inserts patch values by reference."""
    try:
        return "applied", jsonpatch.apply_patch(copy.deepcopy(doc), copy.deepcopy(ops))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        return "refused", str(exc)


def ours_json(doc: Any, ops: list[dict[str, Any]]) -> Outcome:
    """The project's verdict on a ``.json`` file holding ``doc``; any exception but EditError fails the test."""
    text = json.dumps(doc, indent=2) + "\n"
    try:
        return "applied", json.loads(apply_change("doc.json", text, "jsonPatch", patch=copy.deepcopy(ops)))
    except EditError as exc:
        return "refused", str(exc)


def ours_yaml(doc: Any, ops: list[dict[str, Any]]) -> Outcome:
    """The same on a ``.yaml`` file: the patch then walks ruamel's comment-keeping nodes."""
    out = io.StringIO()
    YAML().dump(doc, out)
    try:
        result = apply_change("doc.yaml", out.getvalue(), "jsonPatch", patch=copy.deepcopy(ops))
    except EditError as exc:
        return "refused", str(exc)
    return "applied", YAML(typ="safe", pure=True).load(result)


def canonical(value: Any) -> Any:
    """A form in which ``==`` is RFC 6902 §4.6 equality: booleans tagged apart from numbers.

    Written independently of ``edits.json_equal`` on purpose, so that a bug
    there cannot hide in the comparison that checks it.
    """
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, dict):
        return ("object", frozenset((key, canonical(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(canonical(item) for item in value))
    return (type(value).__name__, value)


# --------------------------------------------------------------------------- deliberate differences


def empty_yaml_document(doc: Any) -> bool:
    """The one deliberate difference, and only in YAML files: an empty (null) document.

    ``edits._edit`` edits an empty YAML document as an empty mapping, so that
    setValue and mergePatch can fill a file that holds only comments. RFC 6902
    §4 applies operations to the target document as it is, and §4.1 needs an
    existing object or array as the parent of an ``add``: the library refuses
    ``add /a`` on ``null`` where the project writes ``{a: ...}``. Such cases are
    left out of the YAML property (never the JSON one, where null stays null).
    """
    return doc is None


# --------------------------------------------------------------------------- what a run covered


def features(doc: Any, ops: list[dict[str, Any]]) -> list[str]:
    """What this example exercised, replayed one operation at a time with the library."""
    out = [f"{len(ops)} operations"]
    current = doc
    for op in ops:
        if op["op"] == "test":
            out += _test_features(current, op)
        verdict, after = theirs(current, [op])
        out.append(f"{op['op']} {verdict}")
        if verdict == "refused":
            break
        current = after
    return out


def _test_features(doc: Any, op: dict[str, Any]) -> list[str]:
    actual, expected = jsonpointer.resolve_pointer(doc, op["path"]), op["value"]
    kinds = {type(actual), type(expected)}
    if bool in kinds and kinds & {int, float}:
        return ["test of a boolean against a number"]
    if kinds == {int, float}:
        return ["test of an int against a float"]
    return []


#: Cases every run must have reached, so that a generator change cannot quietly stop testing them.
MUST_COVER = ["test of a boolean against a number", "test of an int against a float",
              *(f"{kind} {verdict}" for kind in ("add", "remove", "replace", "move", "copy", "test")
                for verdict in ("applied", "refused")),
              "3 operations"]


#: RFC corners every run checks whatever Hypothesis draws. (Hypothesis also mixes in constants it
#: finds in the modules loaded, so the drawn examples shift with the tests collected alongside.)
EXAMPLES: list[tuple[Any, list[dict[str, Any]]]] = [
    ({"a": True}, [{"op": "test", "path": "/a", "value": 1}]),  # §4.6: a boolean is never a number
    ({"a": 0}, [{"op": "test", "path": "/a", "value": False}]),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0},  # §4.6: numbers equal numerically
                {"op": "replace", "path": "/a", "value": True}]),  # and true does replace 1
    ({"a": {"x": 1, "y": [False]}}, [{"op": "test", "path": "/a", "value": {"y": [False], "x": 1.0}}]),
    ({"a": {"x": 1, "y": [False]}}, [{"op": "test", "path": "/a", "value": {"y": [0], "x": 1}}]),
    ({"a": [1]}, [{"op": "add", "path": "/a/2", "value": 0}]),  # §4.1: index past the end
    ({"a": [1]}, [{"op": "remove", "path": "/a/00"}]),  # RFC 6901 §4: no leading zeros
    ({"a": 1}, [{"op": "replace", "path": "/nope", "value": 1}]),  # §4.3: the target must exist
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}]),  # §4.4: not into its own child
    ({"a": 1}, [{"op": "move", "from": "", "path": ""}]),  # a move onto itself changes nothing
    ({"a": [1, 2]}, [{"op": "copy", "from": "/a/0", "path": "/a/-"}]),
    ({"a": 1}, [{"op": "copy", "from": "/nope", "path": "/b"}]),
    ({"a": [1]}, [{"op": "add", "path": "/b", "value": {"c": None}}, {"op": "remove", "path": "/a/0"},
                  {"op": "test", "path": "", "value": {"a": [], "b": {"c": None}}}]),
]


def with_examples(test: Any) -> Any:
    """Run ``EXAMPLES`` first, before anything Hypothesis draws."""
    for case in reversed(EXAMPLES):
        test = example(case)(test)
    return test


def _agree(ours: Outcome, their: Outcome, doc: Any, ops: list[dict[str, Any]]) -> None:
    assert ours[0] == their[0], f"project {ours} but jsonpatch {their} for {ops!r} on {doc!r}"
    if ours[0] == "applied":
        assert canonical(ours[1]) == canonical(their[1]), f"{ours[1]!r} != {their[1]!r} after {ops!r} on {doc!r}"


# --------------------------------------------------------------------------- properties


def test_json_files_patch_like_the_jsonpatch_library() -> None:
    """Same document when both apply, both refuse when either refuses."""

    @SETTINGS
    @given(doc_and_patch())
    @with_examples
    def agree(case: tuple[Any, list[dict[str, Any]]]) -> None:
        doc, ops = case
        _agree(ours_json(doc, ops), theirs(doc, ops), doc, ops)

    agree()


def test_the_pinned_examples_alone_cover_every_case() -> None:
    """Every case of MUST_COVER is reached by the pinned examples, whatever Hypothesis draws besides
    (what it draws shifts with the modules loaded, so a coverage check on the draws would be flaky)."""
    seen: set[str] = set()
    for doc, ops in EXAMPLES:
        seen.update(features(doc, ops))
    assert not set(MUST_COVER) - seen, f"the examples never reach {sorted(set(MUST_COVER) - seen)}"


#: YAML scalars that survive ruamel's round trip unchanged, so that a difference is the patch's, not YAML's.
#: (ruamel rewrites a float with 16 or more significant digits in exponent notation one digit off,
#: 5.332565252217242e+16 → 5.332565252217241e+16: a ruamel matter, left out here; 16-bit floats are short.)
YAML_SCALARS = (st.none() | st.booleans() | st.sampled_from([0, 1, 0.0, 1.0, -1, 2]) | st.integers(-1000, 1000)
                | st.floats(allow_nan=False, allow_infinity=False, width=16) | st.text("ab1 ", max_size=3))


def test_yaml_files_patch_like_the_jsonpatch_library() -> None:
    """The same on ruamel's nodes (a YAML file), minus the empty-document difference."""

    @settings(SETTINGS, max_examples=150)
    @given(doc_and_patch(YAML_SCALARS))
    @with_examples
    def agree(case: tuple[Any, list[dict[str, Any]]]) -> None:
        doc, ops = case
        assume(not empty_yaml_document(doc))
        _agree(ours_yaml(doc, ops), theirs(doc, ops), doc, ops)

    agree()
