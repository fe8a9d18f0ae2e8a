"""Did a person change the very lines a plan edits? Pure, over texts: a three-way comparison.

When the base branch moves under an open plan, rebuilding the plan on the new
base would silently put the plan's values back over a human's edit of the same
lines. Rebuilding is fine when the two changes touch different lines; when they
touch the same ones (or adjacent ones, where git itself would see a conflict),
the operator stops and says so: overriding a human is the plan author's call.
"""

from __future__ import annotations

import difflib


def _changed_ranges(old: list[str], new: list[str]) -> list[tuple[int, int]]:
    """Line ranges of ``old`` (half-open) that ``new`` replaces, deletes, or inserts at."""
    ranges = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            ranges.append((i1, max(i2, i1 + 1)))  # an insertion at i1 touches the line boundary there
    return ranges


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    # Touching ranges count: git's merge also refuses changes to adjacent lines.
    return a[0] <= b[1] and b[0] <= a[1]


def conflicting_lines(base: str | None, ours: str | None, theirs: str | None) -> list[int]:
    """1-based lines of ``base`` that both ``ours`` and ``theirs`` change; [] when the edits are apart.

    A file created on both sides, or deleted by one and edited by the other, conflicts as a whole.
    """
    if base is None or ours is None or theirs is None:
        return [1] if ours != base and theirs != base and ours != theirs else []
    old = base.splitlines(keepends=True)
    mine = _changed_ranges(old, ours.splitlines(keepends=True))
    others = _changed_ranges(old, theirs.splitlines(keepends=True))
    lines: set[int] = set()
    for a in mine:
        for b in others:
            if _overlap(a, b):
                lines.update(range(max(a[0], b[0]) + 1, max(min(a[1], b[1]), max(a[0], b[0]) + 1) + 1))
    return sorted(lines)
