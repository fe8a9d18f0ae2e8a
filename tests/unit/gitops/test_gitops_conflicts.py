"""Three-way detection of a human's edit on the lines a plan edits (gitops/conflicts.py)."""

from reliability_center.gitops.conflicts import conflicting_lines

BASE = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\n"


def test_edits_on_different_lines_do_not_conflict():
    ours = BASE.replace("b: 2", "b: 20")
    theirs = BASE.replace("f: 6", "f: 60")
    assert conflicting_lines(BASE, ours, theirs) == []


def test_edits_on_the_same_line_conflict_and_name_it():
    ours = BASE.replace("c: 3", "c: 30")
    theirs = BASE.replace("c: 3", "c: 31")
    assert conflicting_lines(BASE, ours, theirs) == [3]


def test_adjacent_edits_conflict_as_they_would_for_git():
    ours = BASE.replace("c: 3", "c: 30")
    theirs = BASE.replace("d: 4", "d: 40")
    assert conflicting_lines(BASE, ours, theirs)


def test_the_same_change_on_both_sides_still_counts_and_a_file_made_on_both_sides_conflicts():
    same = BASE.replace("e: 5", "e: 50")
    assert conflicting_lines(BASE, same, same) == [5]
    assert conflicting_lines(None, "x: 1\n", "x: 2\n") == [1]
    assert conflicting_lines(None, "x: 1\n", None) == []


def test_an_insertion_next_to_our_line_conflicts_one_far_away_does_not():
    ours = BASE.replace("b: 2", "b: 20")
    assert conflicting_lines(BASE, ours, BASE.replace("b: 2\n", "b: 2\nbb: 22\n"))
    assert conflicting_lines(BASE, ours, BASE + "g: 7\n") == []
