"""docs/algorithms.md cannot drift from the code: its worked examples run here (doctest), and every function it links
as [`name`](../file.py) is defined in that file."""

import ast
import doctest
import re

from conftest import ROOT

PAGE = ROOT / "docs" / "algorithms.md"


def test_the_worked_examples_compute_what_the_page_says():
    failures, attempted = doctest.testfile(str(PAGE), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted >= 8 and failures == 0


def test_every_function_the_page_names_is_in_the_file_it_names():
    links = re.findall(r"\[`(\w+)`\]\(\.\./([\w/]+\.py)\)", PAGE.read_text())
    assert len(links) >= 20
    for name, path in links:
        tree = ast.parse((ROOT / path).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"{name} is not defined in {path}"
