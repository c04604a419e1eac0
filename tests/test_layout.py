"""The files' shape that the project promises: `diff ppo.py lilo_ppo.py`, `diff vineppo.py lilo_vineppo.py` and
`diff grpo.py lilo_grpo.py` are the learnability idea alone, the same lines in all three, at most 60 changed lines
each."""

import difflib

from conftest import ROOT


def changed_lines(base: str, variant: str) -> list[str]:
    a, b = ((ROOT / name).read_text().splitlines() for name in (base, variant))
    diff = difflib.unified_diff(a, b, n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_lilo_diffs_are_the_same_lines_and_short():
    ppo_diff, vineppo_diff = changed_lines("ppo.py", "lilo_ppo.py"), changed_lines("vineppo.py", "lilo_vineppo.py")
    assert ppo_diff == vineppo_diff == changed_lines("grpo.py", "lilo_grpo.py")
    assert 0 < len(ppo_diff) <= 60
