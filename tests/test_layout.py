"""The files' shape that the project promises: each trainer reads in one sitting, `diff ppo.py lilo_ppo.py`,
`diff vineppo.py lilo_vineppo.py` and `diff grpo.py lilo_grpo.py` are the learnability idea alone, the same lines in
all three, and `diff lilo_ppo.py lilo_ppo_buffered.py` is the buffered variant alone; the top level holds these seven
trainers and nothing else; common/ has no cycle and no shared state."""

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


def test_the_top_level_is_the_papers_algorithms():
    """Seven trainers at the top level, the papers' algorithms: a newcomer's first `ls` shows what to read."""
    assert sorted(path.name for path in ROOT.glob("*.py")) == sorted(LENGTHS)


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


def common_modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted((ROOT / "common").glob("*.py"))}


def common_imports(tree: ast.Module) -> set[str]:
    """The modules of common/ that `tree` imports, anywhere in it (`from common.x import y`, `from common import x`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "common":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("common.")}
    return found


def needs(module: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module of common/ that `module` needs, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def test_common_has_no_import_cycle_and_the_algorithm_parts_copy_alone():
    """No module of common/ needs itself through others; generation, log-probs, step splitting and grading can each
    be copied into another codebase with only the modules named here (the rank helpers and the console)."""
    graph = {name: common_imports(tree) for name, tree in common_modules().items()}
    assert [name for name in graph if name in needs(name, graph)] == []
    assert needs("vllm_utils", graph) == needs("logprobs", graph) == {"distributed", "console"}
    assert needs("steps", graph) == needs("grading", graph) == set()


# Module-level objects that are not the run's state: the grading worker's handle (a subprocess private to
# common/grading.py, started on first use; a grade depends on its inputs alone)
RESOURCES = {("grading", "_WORKER")}
MUTATING_METHODS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add", "remove"}


def test_common_holds_no_module_level_mutable_state():
    """The run's state lives in the loop and travels as arguments and return values: no module of common/ rebinds a
    module-level name (`global`), and no module-level container is mutated, here or in any other file; module-level
    names are constants (numbers, strings, tuples, compiled patterns, dicts and lists that nothing changes)."""
    trees = common_modules()
    containers = {}
    for name, tree in trees.items():
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.Global)], name
        for node in tree.body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                continue
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if not isinstance(target, ast.Name) or (name, target.id) in RESOURCES:
                    continue
                value = node.value
                assert not isinstance(value, ast.Call) or ast.unparse(value.func) in ("re.compile", "frozenset"), (
                    f"common/{name}.py: {target.id} = {ast.unparse(value)[:60]}"
                )
                if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.ListComp, ast.DictComp)):
                    containers[target.id] = name
    everything = [*trees.values(), *(ast.parse(p.read_text()) for p in ROOT.glob("*.py"))]
    for tree in everything:
        for node in ast.walk(tree):
            changed = None
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                for target in node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]:
                    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                        changed = target.value.id
                    elif isinstance(target, ast.Attribute) and ast.unparse(target.value) in trees:
                        changed = f"{ast.unparse(target.value)}.{target.attr}"  # common.x.NAME = ... from outside
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.attr in MUTATING_METHODS
            ):
                changed = node.func.value.id
            assert changed not in containers and "." not in (changed or ""), ast.unparse(node)[:80]
