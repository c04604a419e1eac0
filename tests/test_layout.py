"""The files' shape that the project promises: each trainer reads in one sitting, `diff ppo.py lilo_ppo.py`,
`diff vineppo.py lilo_vineppo.py` and `diff grpo.py lilo_grpo.py` are the learnability idea alone, the same lines in
all three, and `diff lilo_ppo.py lilo_ppo_buffered.py` is the buffered variant alone."""

import ast
import difflib

import pytest

from conftest import ROOT

# reading length of each trainer: the whole file, and the part from `if __name__ == "__main__":`
LENGTHS = {"ppo.py": (450, 200), "vineppo.py": (470, 200), "grpo.py": (420, 200), "lilo_ppo.py": (490, 230),
           "lilo_vineppo.py": (510, 230), "lilo_grpo.py": (460, 230), "lilo_ppo_buffered.py": (500, 240)}  # fmt: skip


def changed_lines(base: str, variant: str) -> list[str]:
    a, b = ((ROOT / name).read_text().splitlines() for name in (base, variant))
    diff = difflib.unified_diff(a, b, n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_lilo_diffs_are_the_same_lines_and_short():
    ppo_diff, vineppo_diff = changed_lines("ppo.py", "lilo_ppo.py"), changed_lines("vineppo.py", "lilo_vineppo.py")
    assert ppo_diff == vineppo_diff == changed_lines("grpo.py", "lilo_grpo.py")
    assert 0 < len(ppo_diff) <= 40


def test_the_buffered_variant_is_a_short_diff_of_lilo_ppo():
    assert 0 < len(changed_lines("lilo_ppo.py", "lilo_ppo_buffered.py")) <= 60


@pytest.mark.parametrize("script", LENGTHS)
def test_each_trainer_reads_in_one_sitting(script):
    lines = (ROOT / script).read_text().splitlines()
    main = len(lines) - lines.index('if __name__ == "__main__":')
    most, most_main = LENGTHS[script]
    assert len(lines) <= most and main <= most_main, (len(lines), main)
    assert max(map(len, lines)) <= 120


def test_benchmarks_import_no_trainer():
    trainers = {name.removesuffix(".py") for name in LENGTHS}
    for script in (ROOT / "benchmarks").glob("*.py"):
        tree = ast.parse(script.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}  # fmt: skip
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & trainers, (script.name, imported & trainers)
