"""Comment-preserving edits of files in the GitOps repository.

Every operation takes the file's current text and returns the new text; no
I/O happens here. YAML goes through ruamel.yaml's round-trip mode so that
comments, key order and quoting survive; a final three-way step
(``_minimal``) copies the original text back wherever ruamel would only have
reformatted, so the pull request diff touches the intended lines and no other.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import re
from collections.abc import Iterator, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from reliability_center.gitops.paths import DiffSize

#: A file larger than this is not parsed (and a createFile larger than this is refused).
MAX_FILE_BYTES = 1024 * 1024


class EditError(ValueError):
    """An edit cannot be applied; the message names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------- entry point


def apply_change(path: str, text: str | None, operation: str, *, yaml_path: str | None = None,
                 value: Any = None, patch: Any = None, content: str | None = None) -> str:
    """The file's new text after one change. ``text`` is None when the file does not exist."""
    if operation == "createFile":
        return create_file(path, text, content)
    if text is None:
        raise EditError(path, f"{operation} needs an existing file; the file does not exist on the base branch")
    if len(text.encode()) > MAX_FILE_BYTES:
        raise EditError(path, f"file is larger than {MAX_FILE_BYTES} bytes; refusing to parse it")
    if operation == "setValue":
        if not yaml_path:
            raise EditError(path, "setValue needs yamlPath")
        steps = parse_yaml_path(yaml_path, path)
        return _edit(path, text, lambda doc: _set_value(path, doc, steps, value))
    if operation == "mergePatch":
        if not isinstance(patch, dict):
            raise EditError(path, "mergePatch needs an object as patch (RFC 7386)")
        return _edit(path, text, lambda doc: _merge_patch(doc, patch))
    if operation == "jsonPatch":
        if not isinstance(patch, list):
            raise EditError(path, "jsonPatch needs a list of operations as patch (RFC 6902)")
        return _edit(path, text, lambda doc: _json_patch(path, doc, patch))
    if operation == "alertThreshold":
        alert, factor = _threshold_change(path, value)
        return _edit(path, text, lambda doc: _alert_threshold(path, doc, alert, factor))
    raise EditError(path, f"unknown operation {operation!r}")


def create_file(path: str, existing: str | None, content: str | None) -> str:
    """createFile is idempotent: an identical existing file is fine, a different one is refused."""
    if content is None:
        raise EditError(path, "createFile needs content")
    if len(content.encode()) > MAX_FILE_BYTES:
        raise EditError(path, f"content is larger than {MAX_FILE_BYTES} bytes")
    if existing is not None and existing != content:
        raise EditError(path, "createFile: the file already exists with different content; use mergePatch or setValue")
    return content


def unified_diff(path: str, before: str | None, after: str) -> str:
    """A git-style unified diff of one file (``/dev/null`` for a new file)."""
    old = (before or "").splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lines = list(difflib.unified_diff(old, new, "/dev/null" if before is None else f"a/{path}", f"b/{path}", n=3))
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def changed_lines(diff: str) -> DiffSize:
    """Added plus removed lines of a unified diff, carrying their bytes for ``check_diff``'s byte limit."""
    lines = list(_changed_content(diff))
    return DiffSize(len(lines), sum(len(line.encode()) for line in lines))


def changed_bytes(diff: str) -> int:
    """UTF-8 bytes of the added and removed lines (without their ``+``/``-`` marker)."""
    return changed_lines(diff).changed_bytes


_HUNK = re.compile(r"^@@ -\d+(?:,(?P<old>\d+))? \+\d+(?:,(?P<new>\d+))? @@")


def _changed_content(diff: str) -> Iterator[str]:
    """The text of every added or removed line, found by the hunk headers' line counts.

    Counting inside hunks, rather than skipping lines that start with ``+++`` or
    ``---``, keeps a changed line whose own text starts with ``++`` or ``--``
    (a YAML ``---`` separator being removed, say) from passing for a file header.
    """
    old = new = 0
    for line in diff.splitlines():
        if old == new == 0:
            hunk = _HUNK.match(line)
            if hunk:
                old, new = int(hunk.group("old") or 1), int(hunk.group("new") or 1)
            continue
        marker, text = line[:1], line[1:]
        if marker == "-":
            old -= 1
            yield text
        elif marker == "+":
            new -= 1
            yield text
        elif marker == " ":
            old, new = old - 1, new - 1


# --------------------------------------------------------------------------- yaml paths

_SEGMENT = re.compile(r"""
    (?P<key>[^.\[\]"']+)            # a plain key
  | \[(?P<index>-?\d+)\]            # [0]
  | \["(?P<dq>[^"]*)"\]             # ["app.kubernetes.io/name"]
  | \['(?P<sq>[^']*)'\]             # ['a.b']
  | (?P<dot>\.)
""", re.VERBOSE)


def parse_yaml_path(expr: str, path: str = "<yamlPath>") -> list[str | int]:
    """``a.b[0].c`` → ``["a", "b", 0, "c"]``; quoted brackets hold keys with dots or slashes."""
    steps: list[str | int] = []
    pos = 0
    expect_step = True  # after a dot (or at the start) a key or bracket must follow
    while pos < len(expr):
        m = _SEGMENT.match(expr, pos)
        if not m:
            raise EditError(path, f"bad yamlPath {expr!r} at offset {pos}")
        if m.group("dot"):
            if expect_step:
                raise EditError(path, f"bad yamlPath {expr!r}: empty segment at offset {pos}")
            expect_step = True
        elif m.group("key") is not None:
            if not expect_step:
                raise EditError(path, f"bad yamlPath {expr!r}: missing '.' before offset {pos}")
            steps.append(m.group("key"))
            expect_step = False
        elif m.group("index") is not None:
            steps.append(int(m.group("index")))
            expect_step = False
        else:
            steps.append(m.group("dq") if m.group("dq") is not None else m.group("sq"))
            expect_step = False
        pos = m.end()
    if expect_step:
        raise EditError(path, f"bad yamlPath {expr!r}: it must not be empty or end with '.'")
    return steps


# --------------------------------------------------------------------------- document I/O


def _edit(path: str, text: str, mutate: Any) -> str:
    if path.endswith(".json"):
        return _edit_json(path, text, mutate)
    yaml = _yaml_for(text)
    try:
        docs = list(yaml.load_all(text))
    except YAMLError as exc:
        raise EditError(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if len(docs) > 1:
        raise EditError(path, f"the file holds {len(docs)} YAML documents; edits need a file with one document")
    doc = docs[0] if docs else None
    rt_original = _dump(yaml, doc) if doc is not None else ""
    if doc is None:
        doc = CommentedMap()
    result = mutate(doc)
    return _minimal(text, rt_original, _dump(yaml, result))


def _yaml_for(text: str) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    mapping, sequence, offset = guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    yaml.explicit_start = first.startswith("---")
    return yaml


def _dump(yaml: YAML, doc: Any) -> str:
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


_KEY_ONLY = re.compile(r"^(?P<ind> *)(?:- +)?[^#\s][^#]*:\s*(#.*)?$")


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file is written; 2/2/0 when unsure."""
    mapping = sequence = offset = None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for cur, nxt in zip(lines, lines[1:]):
        m = _KEY_ONLY.match(cur)
        if not m:
            continue
        base = len(m.group("ind"))
        if cur.lstrip().startswith("- "):
            base = len(cur) - len(cur.lstrip()[2:].lstrip())  # the key's own column inside "- key:"
        ind = len(nxt) - len(nxt.lstrip())
        if ind <= base:
            continue
        if nxt.lstrip().startswith("- "):
            if offset is None:
                offset = ind - base
                after_dash = len(nxt.lstrip()) - len(nxt.lstrip()[1:].lstrip())
                sequence = offset + after_dash
        elif mapping is None:
            mapping = ind - base
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    if offset is None:
        offset, sequence = 0, mapping
    sequence = max(sequence or 2, offset + 2)
    return mapping, sequence, offset


def _edit_json(path: str, text: str, mutate: Any) -> str:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(path, f"not valid JSON: {exc}") from None
    indented = next((ln for ln in text.splitlines()[1:] if ln.startswith(" ")), "")
    indent = (len(indented) - len(indented.lstrip())) or None
    tail = "\n" if text.endswith("\n") else ""

    def dump(value: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False) + tail

    rt_original = dump(doc)
    return _minimal(text, rt_original, dump(mutate(doc)))


def _minimal(original: str, rt_original: str, rt_modified: str) -> str:
    """Apply the change between the two round-trips onto the untouched original text.

    ruamel can reformat lines it did not need to touch (spacing inside flow
    collections, a missing final newline, ...). Each hunk of
    ``rt_original → rt_modified`` is transplanted onto ``original`` when the
    hunk's surroundings line up exactly; otherwise the round-trip output is
    used as is (still a correct edit, only a noisier diff).
    """
    if rt_original == rt_modified:
        return original
    if rt_original == original:
        return rt_modified
    orig = original.splitlines(keepends=True)
    rto = rt_original.splitlines(keepends=True)
    rtm = rt_modified.splitlines(keepends=True)
    if orig and not orig[-1].endswith("\n"):
        orig[-1] += "\n"  # compared with a final newline, which _keep_final_newline drops again
    # rt_original line index → original line index, for lines ruamel kept byte for byte
    align: dict[int, int] = {}
    for a, b, size in difflib.SequenceMatcher(None, rto, orig, autojunk=False).get_matching_blocks():
        for k in range(size):
            align[a + k] = b + k
    align[len(rto)] = len(orig)
    align[-1] = -1  # "the line before the first" for an insertion at the top
    out: list[str] = []
    cursor = 0  # next original line not yet emitted
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, rto, rtm, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            # the lines the hunk replaces must all be in the original, contiguous
            if any(k not in align for k in range(i1, i2)) or align[i2 - 1] - align[i1] != i2 - 1 - i1:
                return _keep_final_newline(original, rt_modified)
            start, end = align[i1], align[i2 - 1] + 1
        elif i1 - 1 in align:
            start = end = align[i1 - 1] + 1  # an insertion goes right after the line it follows
        elif i1 in align:
            start = end = align[i1]
        else:
            return _keep_final_newline(original, rt_modified)
        if start < cursor:
            return _keep_final_newline(original, rt_modified)
        out.extend(orig[cursor:start])
        out.extend(rtm[j1:j2])
        cursor = end
    out.extend(orig[cursor:])
    return _keep_final_newline(original, "".join(out))


def _keep_final_newline(original: str, text: str) -> str:
    if original and not original.endswith("\n") and text.endswith("\n"):
        return text[:-1]
    return text


# --------------------------------------------------------------------------- tree helpers


def _plain(value: Any) -> Any:
    """ruamel nodes → plain Python values (for comparisons and JSON Patch ``test``)."""
    if isinstance(value, MutableMapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, MutableSequence):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, ScalarBoolean):
        return bool(value)  # an anchored YAML boolean: an int subclass in ruamel
    return value


def json_equal(first: Any, second: Any) -> bool:
    """Equality of two JSON values as RFC 6902 §4.6 defines it for the ``test`` operation.

    Python's ``==`` says ``True == 1`` and ``1.0 == 1``; JSON says a boolean is
    never a number, while numbers are equal when numerically equal. Objects
    compare member by member whatever their order, arrays element by element.
    Values of the same kind that JSON lacks (a YAML date) compare with ``==``.
    """
    kind = _json_kind(first)
    if kind != _json_kind(second):
        return False
    if kind == "object":
        return first.keys() == second.keys() and all(json_equal(first[k], second[k]) for k in first)
    if kind == "array":
        return len(first) == len(second) and all(json_equal(a, b) for a, b in zip(first, second))
    return bool(first == second)


def _json_kind(value: Any) -> str:
    """The JSON type of a value, so that ``json_equal`` never compares across types.

    ruamel loads an anchored boolean as ``ScalarBoolean``, an int subclass: it is a boolean here.
    """
    if value is None:
        return "null"
    if isinstance(value, (bool, ScalarBoolean)):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


def _rt(value: Any) -> Any:
    """Plain values → ruamel nodes, so that comments can be attached to them."""
    if isinstance(value, (CommentedMap, CommentedSeq)):
        return value  # already a node (a JSON Patch move/copy): keep its styles
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            node[k] = _rt(v)
        return node
    if isinstance(value, list):
        return CommentedSeq(_rt(v) for v in value)
    return value


def _same_style(old: Any, new: Any) -> Any:
    """A string that replaces a quoted string keeps its quotes."""
    if isinstance(new, str) and not isinstance(new, (DoubleQuotedScalarString, SingleQuotedScalarString)):
        if isinstance(old, DoubleQuotedScalarString):
            return DoubleQuotedScalarString(new)
        if isinstance(old, SingleQuotedScalarString):
            return SingleQuotedScalarString(new)
    return new


def _slot(container: Any) -> int:
    return 0 if isinstance(container, CommentedSeq) else 2


def _last_key(container: Any) -> Any:
    return next(reversed(container)) if isinstance(container, CommentedMap) else len(container) - 1


def _owner(container: Any, key: Any) -> tuple[Any, Any]:
    """The (container, key) whose comment slot holds the comment lines after ``container[key]``.

    ruamel attaches the comment lines that follow an entry to the deepest last
    scalar of that entry's value.
    """
    while True:
        value = container[key]
        if not isinstance(value, (CommentedMap, CommentedSeq)) or not len(value):
            return container, key
        container, key = value, _last_key(value)


def _take_tail(container: Any, key: Any) -> str:
    """Detach the full-line comments after ``container[key]``; its end-of-line comment stays."""
    if not isinstance(container, (CommentedMap, CommentedSeq)):
        return ""
    owner, okey = _owner(container, key)
    entry = owner.ca.items.get(okey)
    slot = _slot(owner)
    if not entry or entry[slot] is None:
        return ""
    first, _, rest = entry[slot].value.partition("\n")
    if not rest:
        return ""
    if first.strip():
        entry[slot].value = first + "\n"
    else:
        entry[slot] = None
    return rest


def _put_tail(container: Any, key: Any, rest: str) -> None:
    """Attach comment lines after ``container[key]``."""
    if not rest or not isinstance(container, (CommentedMap, CommentedSeq)):
        return
    owner, okey = _owner(container, key)
    slot = _slot(owner)
    entry = owner.ca.items.setdefault(okey, [None, None, None, None])
    if entry[slot] is None:
        entry[slot] = CommentToken("\n" + rest, CommentMark(0), None)
    else:
        entry[slot].value = entry[slot].value.rstrip("\n") + "\n" + rest


def _assign(container: Any, key: Any, value: Any) -> None:
    """Set ``container[key]``, leaving an unchanged value (and its formatting) alone.

    A new key goes last and takes over the comment lines that followed the old
    last entry; a replaced collection hands its trailing comment lines to the new one.
    """
    exists = key in container if isinstance(container, MutableMapping) else True
    if exists:
        old = container[key]
        if json_equal(_plain(old), _plain(value)):
            return  # but ``true`` does replace ``1``: Python's == would call them equal
        tail = _take_tail(container, key) if isinstance(old, (CommentedMap, CommentedSeq)) else ""
        container[key] = _same_style(old, _rt(value))
        _put_tail(container, key, tail)
        return
    tail = _take_tail(container, _last_key(container)) if len(container) else ""
    container[key] = _rt(value)
    _put_tail(container, key, tail)


def _append(seq: Any, value: Any, index: int | None = None) -> None:
    if index is None or index == len(seq):
        tail = _take_tail(seq, len(seq) - 1) if len(seq) else ""
        seq.append(_rt(value))
        _put_tail(seq, len(seq) - 1, tail)
    else:
        # the comment lines before the old entry at ``index`` stay with it
        tail = _take_tail(seq, index - 1) if index > 0 else ""
        seq.insert(index, _rt(value))
        _put_tail(seq, index, tail)


def _delete(container: Any, key: Any) -> None:
    """Delete an entry; the comment lines that followed it stay, after the previous entry."""
    if not isinstance(container, (CommentedMap, CommentedSeq)):
        del container[key]
        return
    keys = list(container) if isinstance(container, CommentedMap) else list(range(len(container)))
    pos = keys.index(key)
    tail = _take_tail(container, key)
    del container[key]
    if isinstance(container, CommentedMap):
        container.ca.items.pop(key, None)
    if pos > 0:
        _put_tail(container, keys[pos - 1], tail)
    elif tail and len(container):
        _put_head(container, tail)


def _put_head(container: Any, lines: str) -> None:
    """Comment lines before the first entry of a collection."""
    token = CommentToken(lines, CommentMark(0), None)
    if container.ca.comment is None:
        container.ca.comment = [None, [token]]
    elif container.ca.comment[1] is None:
        container.ca.comment[1] = [token]
    else:
        container.ca.comment[1].append(token)


# --------------------------------------------------------------------------- operations


def _set_value(path: str, doc: Any, steps: list[str | int], value: Any) -> Any:
    node = doc
    for depth, step in enumerate(steps[:-1]):
        nxt = steps[depth + 1]
        node = _child(path, node, step, create=CommentedSeq if isinstance(nxt, int) else CommentedMap,
                      parent=_where(steps[:depth]), where=_where(steps[: depth + 1]))
    last = steps[-1]
    where = _where(steps)
    parent = _where(steps[:-1]) or "the document"
    if isinstance(last, int):
        if not isinstance(node, MutableSequence):
            raise EditError(path, f"{parent} is not a list; cannot set {where}")
        if last == len(node):
            _append(node, value)
        elif -len(node) <= last < len(node):
            _assign(node, last % len(node), value)
        else:
            raise EditError(path, f"index {last} out of range at {where} (the list has {len(node)} items)")
    else:
        if not isinstance(node, MutableMapping):
            raise EditError(path, f"{parent} is not a mapping; cannot set {where}")
        _assign(node, last, value)
    return doc


def _child(path: str, node: Any, step: str | int, create: type, parent: str, where: str) -> Any:
    parent = parent or "the document"
    if isinstance(step, int):
        if not isinstance(node, MutableSequence):
            raise EditError(path, f"{parent} is not a list; cannot go into {where}")
        if not -len(node) <= step < len(node):
            raise EditError(path, f"index {step} out of range at {where} (the list has {len(node)} items)")
        return node[step]
    if not isinstance(node, MutableMapping):
        raise EditError(path, f"{parent} is not a mapping; cannot go into {where}")
    if step not in node or node[step] is None:
        _assign(node, step, create())
    return node[step]


def _where(steps: list[str | int]) -> str:
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[^.\[\]\"']+", step):
            out += ("." if out else "") + step
        else:
            out += f'["{step}"]'
    return out


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, MutableMapping):
        target = CommentedMap()
    for key, value in patch.items():
        if value is None:
            if key in target:
                _delete(target, key)
        elif isinstance(value, dict) and isinstance(target.get(key), MutableMapping):
            _merge_patch(target[key], value)
        else:
            _assign(target, key, _strip_nulls(value))
    return target


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value


def _pointer(path: str, pointer: Any) -> list[str]:
    """RFC 6901: ``/a~1b/0`` → ``["a/b", "0"]``; ``""`` is the whole document."""
    if not isinstance(pointer, str):
        raise EditError(path, f"JSON pointer {pointer!r} must be a string")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise EditError(path, f"JSON pointer {pointer!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _resolve(path: str, doc: Any, parts: list[str], pointer: str) -> Any:
    node = doc
    for part in parts:
        node = _step(path, node, part, pointer)
    return node


def _step(path: str, node: Any, part: str, pointer: str) -> Any:
    if isinstance(node, MutableMapping):
        if part not in node:
            raise EditError(path, f"JSON pointer {pointer!r}: no member {part!r}")
        return node[part]
    if isinstance(node, MutableSequence):
        index = _index(path, part, pointer, len(node))
        if index >= len(node):
            raise EditError(path, f"JSON pointer {pointer!r}: index {part} out of range")
        return node[index]
    raise EditError(path, f"JSON pointer {pointer!r}: {part!r} is below a scalar")


def _index(path: str, part: str, pointer: str, size: int) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", part):
        raise EditError(path, f"JSON pointer {pointer!r}: {part!r} is not a list index")
    return int(part)


def _json_patch(path: str, doc: Any, ops: list[Any]) -> Any:
    """RFC 6902, applied in order; a failing operation (a ``test`` among them) aborts the whole patch."""
    for number, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise EditError(path, f"jsonPatch operation #{number} needs 'op' and 'path'")
        doc = _operation(path, doc, op, number)
    return doc


def _operation(path: str, doc: Any, op: dict[str, Any], number: int) -> Any:
    """One RFC 6902 operation; returns the document (a new one when the root is replaced)."""
    kind, pointer = op["op"], op["path"]
    parts = _pointer(path, pointer)
    if kind == "test":
        _test(path, doc, parts, op, number)
        return doc
    if kind in ("move", "copy"):
        return _move_or_copy(path, doc, parts, op, number)
    if kind == "remove":
        return _remove(path, doc, parts, pointer)
    if kind in ("add", "replace"):
        if "value" not in op:
            raise EditError(path, f"jsonPatch {kind} #{number} needs 'value'")
        if kind == "replace":
            _resolve(path, doc, parts, pointer)  # must exist
        return _add(path, doc, parts, pointer, op["value"], replace=kind == "replace")
    raise EditError(path, f"jsonPatch operation #{number}: unknown op {kind!r}")


def _move_or_copy(path: str, doc: Any, parts: list[str], op: dict[str, Any], number: int) -> Any:
    """RFC 6902 §4.4/§4.5: a move is a remove then an add; a copy adds a deep copy."""
    kind, pointer = op["op"], op["path"]
    if "from" not in op:
        raise EditError(path, f"jsonPatch {kind} #{number} needs 'from'")
    source_parts = _pointer(path, op["from"])
    if kind == "move" and parts[: len(source_parts)] == source_parts and parts != source_parts:
        raise EditError(path, f"jsonPatch move #{number}: cannot move {op['from']!r} into itself")
    node = _resolve(path, doc, source_parts, op["from"])
    if kind == "copy":
        return _add(path, doc, parts, pointer, copy.deepcopy(node))
    if parts == source_parts:
        return doc  # a move onto itself changes nothing (even of the whole document)
    doc = _remove(path, doc, source_parts, op["from"])
    return _add(path, doc, parts, pointer, node)


def _test(path: str, doc: Any, parts: list[str], op: dict[str, Any], number: int) -> None:
    """RFC 6902 §4.6: the value at ``path`` must equal ``value`` as JSON, so ``true`` never passes for ``1``."""
    pointer = op["path"]
    if "value" not in op:
        raise EditError(path, f"jsonPatch test #{number} needs 'value'")
    actual, expected = _plain(_resolve(path, doc, parts, pointer)), op["value"]
    if not json_equal(actual, expected):
        raise EditError(path, f"jsonPatch test failed at {pointer!r}: {_mismatch(actual, expected)}")


_KIND_NAMES = {"null": "null", "boolean": "a boolean", "number": "a number", "string": "a string",
               "object": "an object", "array": "an array"}


def _mismatch(actual: Any, expected: Any) -> str:
    """What the test expected and what kind of value the document holds instead.

    The document's value itself is not quoted: the failure lands in the
    PatchPlan's status, which people may read who cannot read the repository.
    """
    expected_kind, actual_kind = _json_kind(expected), _json_kind(actual)
    text = json.dumps(expected, ensure_ascii=False, default=str)
    shown = text if len(text) <= 80 else text[:77] + "..."
    name = _KIND_NAMES.get(expected_kind, f"a {expected_kind} value")
    holds = (f"a different {expected_kind}" if actual_kind == expected_kind and actual_kind != "null"
             else _KIND_NAMES.get(actual_kind, f"a {actual_kind} value"))
    return f"the test expects {shown} ({name}); the document holds {holds}"


def _add(path: str, doc: Any, parts: list[str], pointer: str, value: Any, replace: bool = False) -> Any:
    if not parts:
        return _rt(value)
    parent = _resolve(path, doc, parts[:-1], pointer)
    last = parts[-1]
    if isinstance(parent, MutableMapping):
        _assign(parent, last, value)
    elif isinstance(parent, MutableSequence):
        if replace:
            _assign(parent, _index(path, last, pointer, len(parent)), value)
        else:
            index = len(parent) if last == "-" else _index(path, last, pointer, len(parent))
            if index > len(parent):
                raise EditError(path, f"JSON pointer {pointer!r}: index {last} out of range")
            _append(parent, value, index)
    else:
        raise EditError(path, f"JSON pointer {pointer!r}: the parent is a scalar")
    return doc


def _remove(path: str, doc: Any, parts: list[str], pointer: str) -> Any:
    if not parts:
        raise EditError(path, "jsonPatch cannot remove the whole document")
    parent = _resolve(path, doc, parts[:-1], pointer)
    _step(path, parent, parts[-1], pointer)  # must exist
    key: Any = parts[-1] if isinstance(parent, MutableMapping) else int(parts[-1])
    _delete(parent, key)
    return doc


# --------------------------------------------------------------------------- alerting rule thresholds

#: An expression's threshold: the number its last comparison is to, at its very end (``... > 0.9``).
_THRESHOLD = re.compile(r"(?P<head>.*?)(?P<op>>=|<=|>|<)(?P<space>\s*)(?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
                        r"(?P<tail>\s*)$", re.S)


def _threshold_change(path: str, value: Any) -> tuple[str, float]:
    if not isinstance(value, Mapping) or set(value) != {"alert", "factor"}:
        raise EditError(path, "alertThreshold needs value {alert: <alerting rule name>, factor: <number>}")
    alert, factor = value["alert"], value["factor"]
    if not isinstance(alert, str) or not alert:
        raise EditError(path, "alertThreshold: alert must be an alerting rule's name")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.1 <= factor <= 10:
        raise EditError(path, f"alertThreshold: factor must be a number from 0.1 to 10, not {factor!r}")
    return alert, float(factor)


def threshold_of(expr: str) -> tuple[str, float] | None:
    """(comparison, number) of an expression ending in a comparison to a number; None otherwise
    (a multi-window burn rate ``(... > 14.4 * 0.05)`` has no single threshold to move)."""
    m = _THRESHOLD.fullmatch(expr)
    return (m["op"], float(m["number"])) if m else None


def _alert_threshold(path: str, doc: Any, alert: str, factor: float) -> Any:
    """The alerting rule ``alert`` fires earlier (factor < 1) or later (factor > 1): the number its
    expression ends comparing to is multiplied by the factor for ``>``/``>=`` and divided by it for
    ``<``/``<=``. A proposal: a file without that rule, or a rule without such a number, is left as
    it is (the postmortem says what was proposed and why)."""
    groups = doc.get("groups") if isinstance(doc, MutableMapping) else None
    for group in groups if isinstance(groups, MutableSequence) else []:
        rules = group.get("rules") if isinstance(group, MutableMapping) else None
        for rule in rules if isinstance(rules, MutableSequence) else []:
            if not isinstance(rule, MutableMapping) or rule.get("alert") != alert:
                continue
            expr = rule.get("expr")
            m = _THRESHOLD.fullmatch(str(expr)) if isinstance(expr, str) else None
            if m is None:
                continue
            old = float(m["number"])
            new = old * factor if m["op"].startswith(">") else old / factor
            text = f"{m['head']}{m['op']}{m['space']}{new:.6g}{m['tail']}"
            _assign(rule, "expr", LiteralScalarString(text) if isinstance(expr, LiteralScalarString) else text)
    return doc
