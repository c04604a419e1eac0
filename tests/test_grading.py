import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import grading  # noqa: E402
from common.grading import extract_answer, grade  # noqa: E402

# ------------------------------------------------------------------------------------ extraction

EXTRACTION = [
    (r"So the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"$\boxed{ 42 }$", "42"),
    (r"\fbox{7}", "7"),
    (r"first \boxed{1}, then \boxed{2}", "2"),
    (r"\boxed{1} and finally \fbox{3}", "3"),
    (r"The answer is $\boxed 5$.", "5"),
    (r"The answer is \boxed 5", "5"),
    (r"#### 3 but \boxed{4}", "4"),
    (r"\boxed{\text{(A)}}", r"\text{(A)}"),
    (r"\boxed{a} \boxed{}", "a"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,234", "1,234"),
    ("so\n#### 12\n", "12"),
    ("#### 1\n#### 2", "2"),
    ("#### 5\nThe answer is 6.", "5"),
    ("The answer is 42.", "42"),
    ("Therefore, the final answer is $3.5$. I hope it is correct.", "3.5"),
    ("The answer is: 7 apples.", "7 apples"),
    ("the answer is **12**", "12"),
    ("I have 3 apples and 4 pears, 7 in all", "7"),
    ("it costs -2.5 dollars", "-2.5"),
    ("total 1,234,567 dollars", "1,234,567"),
    ("a ratio of 3/4 here", "3/4"),
    ("only .5 left", ".5"),
    (r"\boxed{12", "12"),
    ("no numbers here", None),
    ("", None),
    (r"\boxed{}", None),
    (None, None),
    (5, None),
]


@pytest.mark.parametrize("text, expected", EXTRACTION)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# ----------------------------------------------------------------------------------- equivalence

TRUE = [
    # completions and GSM8K
    (r"The answer is $\boxed{5}$.", "5"),
    ("Each box has 4 pens, so 12 pens.\n#### 12", "12"),
    ("#### 1,234", "1234"),
    ("He pays $1,000.", "1000"),
    ("The answer is 18 dollars.", "18"),
    ("So she has 18", "18"),
    # normalisation
    ("1{,}000", "1000"),
    (r"\$5", "5"),
    (r"5\%", "5"),
    (r"50\%", "50"),
    (r"90^\circ", "90"),
    (r"90^{\circ}", "90"),
    (r"5 \text{ cm}", "5"),
    (r"5\text{ cm}^2", "5"),
    (r"\frac{1}{2} \mbox{ inches}", r"\frac12"),
    ("12 dollars", "12"),
    (r"\text{(A)}", "(A)"),
    (r"\text{(B)}", "B"),
    (r"\text{Monday}", "monday"),
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac{1}{2}"),
    (r"\sqrt2", r"\sqrt{2}"),
    (r"\left( 1, 2 \right)", "(1,2)"),
    (r"3\!\cdot\!4", r"3 \cdot 4"),
    ("x = 3", "3"),
    ("3", "y=3"),
    (r"k=\frac{1}{2}", "0.5"),
    ("5.0", "5"),
    ("5.00", "5"),
    (".5", "0.5"),
    ("5.", "5"),
    ("-0.5", r"-\frac12"),
    # numbers
    ("3/4", "0.75"),
    (r"-\frac{3}{4}", "-0.75"),
    (r"\frac{-3}{4}", "-3/4"),
    ("2.50", "2.5"),
    ("0.3333", r"\frac{1}{3}"),
    ("1.5", r"\frac{3}{2}"),
    ("12345678901234567890", "12,345,678,901,234,567,890"),
    # sympy
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{\pi}{2}", r"\pi/2"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    (r"\frac{\sqrt3}{3}", r"\frac{1}{\sqrt{3}}"),
    ("0.7071", r"\frac{\sqrt{2}}{2}"),
    ("6.28318", r"2\pi"),
    ("2x+1", "1+2x"),
    ("y = 2x + 1", "2x+1"),
    ("x^2-1", "(x-1)(x+1)"),
    (r"\sin^2 x + \cos^2 x", "1"),
    (r"\sqrt[3]{8}", "2"),
    ("2^{10}", "1024"),
    ("10^3", "1000"),
    ("3+4i", "4i+3"),
    (r"\binom{5}{2}", "10"),
    ("5!", "120"),
    (r"e^{i\pi}", "-1"),
    (r"\ln(e^2)", "2"),
    ("x+y=1", "1=y+x"),
    (r"\frac{x}{2}", "0.5x"),
    (r"a_1 + a_2", "a_2+a_1"),
    # structures
    (r"\infty", r"\infty"),
    ("(1, 2]", "(1,2]"),
    (r"(-\infty, 3)", r"(-\infty,3)"),
    (r"[0,\frac{1}{2})", "[0, 0.5)"),
    (r"x \in [1,2]", "[1,2]"),
    (r"\{1,2,3\}", r"\{3,2,1\}"),
    (r"\{2,1\}", "1, 2"),
    ("1, 2, 3", "3,2,1"),
    ("x=1, x=2", "2, 1"),
    (r"1 \text{ and } 2", "1, 2"),
    ("(1,2),(3,4)", "(3,4),(1,2)"),
    (r"(\frac12, \sqrt{12})", r"(0.5, 2\sqrt3)"),
    (r"(-\infty,1)\cup(2,\infty)", r"(2,\infty)\cup(-\infty,1)"),
    (r"The answer is $\frac{1}{2}$.", r"\frac12"),
    (r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}"),
]

FALSE = [
    ("5", "6"),
    ("#### 1,234", "1235"),
    ("10000", "10001"),
    ("123.45", "123.46"),
    ("1.5", "1.50001"),
    ("0.33", r"\frac{1}{3}"),
    ("-5", "5"),
    (r"50\%", "0.5"),
    ("2.9999", "3"),
    (r"2\sqrt{3}", r"\sqrt{13}"),
    (r"\frac{\pi}{2}", r"\pi"),
    (r"\sqrt{2}", "1.41"),
    ("2^{10}", "1023"),
    ("x+1", "x-1"),
    ("3+4i", "3-4i"),
    ("x=3", "x=4"),
    ("2x=4", "x=2"),
    (r"\infty", r"-\infty"),
    ("(1,2)", "(2,1)"),
    ("(1,2)", "[1,2]"),
    ("(1,2]", "(1,2)"),
    ("(1,2)", "1,2"),
    (r"\{1,2\}", r"\{1,3\}"),
    ("1,2", "1,2,3"),
    ("1,1,2", "1,2,2"),
    ("no", "on"),
    ("yes", "no"),
    (r"\text{(A)}", "B"),
    ("", "5"),
    ("   ", "5"),
    (r"\boxed{}", "5"),
    ("The answer is 5", ""),
    ("I am not sure.", "5"),
    ("The answer is 41.\n" + "so 42 " * 100, "42"),
    (None, "5"),
    ("5", None),
]


@pytest.mark.parametrize("response, gold", TRUE)
def test_equivalent(response, gold):
    assert grade(response, gold) is True


@pytest.mark.parametrize("response, gold", FALSE)
def test_not_equivalent(response, gold):
    assert grade(response, gold) is False


def test_grade_is_symmetric_on_bare_answers():
    for a, b in TRUE[6:]:
        if not any(c in a + b for c in "#=") and "answer" not in a and "boxed" not in a:
            assert grade(b, a) is True, (b, a)


# ------------------------------------------------------------------------- adversarial inputs

ADVERSARIAL = [
    (r"\boxed{10^{10^{10}}}", "1"),
    (r"9^{9^{9^{9}}}", "1"),
    (r"\boxed{2^{99999999}}", "1"),
    (r"\boxed{{10^{10}}^{10^{10}}}", "1"),
    (r"\boxed{2^{9999}^{9999}}", "1"),
    (r"\boxed{99999!}", "1"),
    (r"\boxed{(10^{4})!}", "1"),
    (r"\boxed{(3^{9999})^{9999}}", "1"),  # passes every guard: only the time limit stops it
    ("x" * 100_000, "1"),
    ("1" * 100_000, "1"),
    ("The answer is " + "9" * 5000, "1"),
    (r"\boxed{" * 5000 + "1" + "}" * 5000, "2"),
    (r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "2"),
    (r"\boxed{" + "{" * 10_000, "2"),
    (r"\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", "2"),
    (r"\boxed{" + "(1," * 300 + "1" + ")" * 300 + "}", "(1,1)"),
    (r"\boxed{1" + ",1" * 400 + "}", "1"),
    (r"\boxed{" + "+".join(["x"] * 200) + "}", "1"),
    (r"\boxed{\frac{}{}}", "0"),
    (r"\frac{}{}", "1"),
    (r"\boxed{\sqrt{}}", "0"),
    ("}}}{{{", "1"),
    ("\x00\x00\\boxed{\x00}", "0"),
    ("\\boxed{∞ π ½ 你好 \U0001F600}", "1"),
    (r"\boxed{__import__('os').system('echo hi')}", "0"),
    (r"\boxed{().__class__.__bases__}", "0"),
    (r"\boxed{open(1)}", "0"),
    (r"\boxed{input()}", "0"),
    (r"\boxed{exit()}", "0"),
    (r"\boxed{1/0}", "1"),
    (r"\boxed{\frac{1}{0}}", "1"),
    (r"\boxed{\\\\\\}", "1"),
    (r"\boxed{\unknowncommand{3}}", "3"),
    (r"\boxed{x_{}^{}}", "x"),
]


@pytest.mark.parametrize("response, gold", ADVERSARIAL)
def test_adversarial_inputs_are_false_and_fast(response, gold):
    start = time.perf_counter()
    assert grade(response, gold) is False
    assert time.perf_counter() - start < 5.0


def test_worker_is_restarted_after_a_timeout():
    assert grade(r"\sqrt{12}", r"2\sqrt{3}") is True  # the worker is up
    first = grading._WORKER.proc.pid
    start = time.perf_counter()
    assert grade(r"(5^{9999})^{9999}", "1", timeout=0.5) is False  # hangs sympy: killed
    assert time.perf_counter() - start < 2.0
    assert grading._WORKER.proc is None
    assert grade(r"3\sqrt{2}", r"\sqrt{18}") is True  # a fresh worker answers
    assert grading._WORKER.proc.pid != first


def test_too_small_a_budget_gives_false_not_an_error():
    assert grade(r"\sin^2 y + \cos^2 y", "1", timeout=1e-4) is False
    assert grade(r"\sin^2 y + \cos^2 y", "1") is True


def test_worker_crash_is_survived():
    assert grade(r"4\sqrt{2}", r"\sqrt{32}") is True
    grading._WORKER.proc.kill()
    grading._WORKER.proc.wait()
    assert grade(r"5\sqrt{2}", r"\sqrt{50}") is True  # a dead worker is replaced
    assert grading._WORKER.proc.poll() is None


def test_grade_never_raises(monkeypatch):
    def boom(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(grading, "_normalize", boom)
    grading._answers_equal.cache_clear()
    assert grade("5", "5") is False
    monkeypatch.undo()
    grading._answers_equal.cache_clear()
    assert grade("5", "5") is True
