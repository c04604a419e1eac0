import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import grading  # noqa: E402
from common.grading import GraderUnavailable, extract_answer, grade  # noqa: E402

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
    # stated answers, the Minerva sentence among them
    ("The answer is 42.", "42"),
    ("Therefore, the final answer is $3.5$. I hope it is correct.", "3.5"),
    (r"Final Answer: The final answer is $\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
    ("Final Answer: The final answer is 7. I hope it is correct.", "7"),
    ("The final answer is $x = 3$.", "x = 3"),
    ("The answer is: 7 apples.", "7 apples"),
    ("the answer is **12**", "12"),
    ("So the answer is $1,000.", "1,000"),
    ("Answer: 12", "12"),
    ("The answer is 3 and 5.", "3 and 5"),
    # bare answers: the whole response
    (r"\frac{1}{2}", r"\frac{1}{2}"),
    (r"$\frac12$", r"\frac12"),
    ("x = 3", "x = 3"),
    ("(1, 2]", "(1, 2]"),
    ("1 and 2", "1 and 2"),
    (r"\text{Monday}", r"\text{Monday}"),
    ("Monday", "Monday"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    # unmarked completions: the last number, when it stands alone
    ("So she has 18 apples.", "18"),
    ("I have 3 apples and 4 pears, 7 in all", "7"),
    ("it costs -2.5 dollars", "-2.5"),
    ("total 1,234,567 dollars", "1,234,567"),
    ("a ratio of 3/4 here", "3/4"),
    ("only .5 left", ".5"),
    ("He pays $1,000.", "1,000"),
    ("so 3 * 6 = 18", "18"),
    ("It is 50% off", "50%"),
    # ... and when it does not, there is no answer
    (r"so it is \frac12", None),
    ("the total is 2^{10}", None),
    ("x lies in [0,1)", None),
    (r"Thus $x=\frac{7}{2}$.", None),
    ("the roots are 1, 2", None),
    ("the roots are 3 and 4", None),
    ("we are left with 18 + x", None),
    ("it is 5 - 3", None),
    ("so 3 * 6", None),
    ("it is x2", None),
    (r"\boxed{12", None),  # cut off: 12 or 125?
    ("no numbers here", None),
    ("", None),
    (r"\boxed{}", None),
    (None, None),
    (5, None),
]


@pytest.mark.parametrize("text, expected", EXTRACTION)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# ------------------------------------------------------------------ the classes of issue #14

WRONG_ANSWERS_ONCE_REWARDED = [  # (response, gold): all wrong
    # no box: a digit from inside a fraction, a power, an interval, an equation
    (r"\frac12", "2"),
    ("2^{10}", "10"),
    ("[0,1)", "1"),
    (r"Thus $x=\frac{7}{2}$.", "2"),
    (r"so it is \frac12", "2"),
    ("the total is 2^{10}", "10"),
    ("x lies in [0,1)", "1"),
    ("the roots are 1, 2", "2"),
    ("the roots are 3 and 4", "4"),
    ("She has 18 apples left, 3 more than Tom.", "18"),  # its last number is 3
    # lists read as one number
    (r"\boxed{32, 349}", "32349"),
    ("32, 349", "32349"),
    (r"\boxed{1, 2}", "12"),
    (r"\boxed{1,1}", "1"),
    # mixed numbers
    (r"\boxed{1}", r"2\frac12"),
    (r"\boxed{1}", r"2\frac{1}{2}"),
    (r"\boxed{2\frac{1}{2}}", "1"),
    (r"\boxed{2\frac{1}{2}}", "2"),
    # the Minerva sentence, wrong
    ("Final Answer: The final answer is $7$. I hope it is correct.", "8"),
]

RIGHT_ANSWERS = [  # their right counterparts
    (r"\frac12", r"\frac{1}{2}"),
    ("2^{10}", "1024"),
    ("[0,1)", "[0, 1)"),
    (r"Thus $x=\frac{7}{2}$. The answer is $\frac72$.", r"\frac{7}{2}"),
    ("So she has 18 apples.", "18"),
    ("She has 18 apples left, 3 more than Tom. The answer is 18.", "18"),
    (r"\boxed{32,349}", "32349"),
    (r"\boxed{32{,}349}", "32349"),
    (r"\boxed{32, 349}", "32, 349"),
    (r"\boxed{2\frac12}", r"2\frac12"),
    (r"\boxed{2\frac{1}{2}}", "2.5"),
    (r"\boxed{2 \frac{1}{2}}", r"\frac52"),
    (r"\boxed{\frac52}", r"2\frac{1}{2}"),
    # the Minerva sentence
    (r"Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct.", "0.75"),
    ("Final Answer: The final answer is $8$. I hope it is correct.", "8"),
    # matrices: row breaks with or without a space, bmatrix vs pmatrix, 0.5 vs \frac12 inside
    (r"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\begin{pmatrix} 0.5 \\ -1 \end{pmatrix}", r"\begin{pmatrix} \frac12 \\ -1 \end{pmatrix}"),
    # relations
    (r"x \ge 2", r"x \geq 2"),
    ("x >= 2", r"x\geq 2"),
    (r"x \le 5", r"x \leq 5"),
    (r"5 \geq x", r"x \leq 5"),
    (r"y \neq 3", r"y \ne 3"),
    # \pm expanded
    (r"1 \pm \sqrt{2}", r"1+\sqrt{2}, 1-\sqrt{2}"),
    (r"x = \pm 2", "-2, 2"),
    (r"\pm 3", "3, -3"),
    # (p,q)= prefixes
    ("(p,q)=(3,2)", "(3,2)"),
    ("(x, y) = (1, -1)", "(1,-1)"),
    # sets in braces, lists with "and"
    ("{1, 2}", "1, 2"),
    (r"\boxed{\{1, 2\}}", "2,1"),
    (r"\left\{ 1,2 \right\}", "1,2"),
    (r"1 \text{ and } 2", "1, 2"),
    ("1 and 2", "2, 1"),
    ("The answer is 3 and 5.", "3, 5"),
    (r"\boxed{2 \text{ and } -3}", "-3,2"),
    # \cfrac, \textnormal units
    (r"\cfrac{1}{2}", "0.5"),
    (r"\cfrac{3}{4}", r"\frac34"),
    (r"The distance is $\boxed{125\textnormal{ miles}}.$", "125"),
    (r"12\textnormal{ cm}^2", "12"),
]

WRONG_ANSWERS = [  # near misses of the right ones
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 & 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"x \ge 2", r"x \le 2"),
    ("x > 2", r"x \geq 2"),
    (r"x \neq 2", "x = 2"),
    (r"1 + \sqrt{2}", r"1 \pm \sqrt{2}"),
    (r"1 \pm \sqrt{2}", r"1 + \sqrt{2}"),
    ("(p,q)=(2,3)", "(3,2)"),
    (r"\{1, 3\}", "1, 2"),
    ("1 and 3", "1, 2"),
    (r"\cfrac{1}{3}", "0.5"),
    (r"125\textnormal{ miles}", "12"),
]


@pytest.mark.parametrize("response, gold", WRONG_ANSWERS_ONCE_REWARDED + WRONG_ANSWERS)
def test_issue_14_wrong_answers(response, gold):
    assert grade(response, gold) is False


@pytest.mark.parametrize("response, gold", RIGHT_ANSWERS)
def test_issue_14_right_answers(response, gold):
    assert grade(response, gold) is True


# -------------------------------------------------------------- conventions (module docstring)

CONVENTIONS = [  # (response, gold, verdict)
    (r"\boxed{1} and \boxed{2}", "2", True),  # the last box is the answer
    (r"\boxed{1} and \boxed{2}", "1, 2", False),
    (r"\boxed{2} or maybe \boxed{3}", "2", False),  # no hedging with boxes
    ("10, 4, -2", "4, 10, -2", True),  # lists are sets (hendrycks/math's tests: order matters)
    ("1,1,2", "1,2,2", True),  # ... of the same length: repeats are not counted
    ("1,1", "1", False),
    ("(1,2)", "(2,1)", False),  # tuples are ordered
    ("(1,2)", "1,2", False),  # a pair keeps its brackets (math-verify alone would accept)
    (r"50\%", "50", True),  # percent: X% is X/100 and matches X
    (r"50\%", "0.5", True),
    (r"50\%", r"\frac12", True),
    ("50", r"50\%", True),
    ("0.5", "50", False),
    ("0.333333", r"\frac{1}{3}", True),  # decimals: 6 places
    ("0.3333", r"\frac{1}{3}", False),
    ("0.7071", r"\frac{\sqrt{2}}{2}", False),
    ("6.28318", r"2\pi", False),
    ("1.5", "1.50001", False),
    ("no", "on", False),  # words are strings, never products of symbols
    (r"\text{no}", "on", False),
    ("Evelyn", r"\text{Evelyn}", True),
    (r"\text{ No Solution }", "no solution", True),
    ("x=3", "3", True),  # equations
    ("3", "y=3", True),
    ("2x=4", "x=2", False),
    ("So she has 18 apples.", "18", True),  # unmarked completions: the last standalone number
    ("48 + 24 = 72 clips.", "72", True),
    ("He pays $1,000.", "1000", True),
    ("It is 50% off", "0.5", True),
]


@pytest.mark.parametrize("response, gold, verdict", CONVENTIONS)
def test_conventions(response, gold, verdict):
    assert grade(response, gold) is verdict


# ---------------------------------------------------------------------- our earlier test cases

TRUE = [
    # completions and GSM8K
    (r"The answer is $\boxed{5}$.", "5"),
    ("Each box has 4 pens, so 12 pens.\n#### 12", "12"),
    ("#### 1,234", "1234"),
    ("He pays $1,000.", "1000"),
    ("The answer is 18 dollars.", "18"),
    ("So she has 18", "18"),
    ("1 + 2 = 3. The answer is \\boxed{3}.", "3"),
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
    ("1.5", r"\frac{3}{2}"),
    ("12345678901234567890", "12,345,678,901,234,567,890"),
    # expressions
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{\pi}{2}", r"\pi/2"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    (r"\frac{\sqrt3}{3}", r"\frac{1}{\sqrt{3}}"),
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
    ("-5", "5"),
    ("2.9999", "3"),
    ("0.33", r"\frac{1}{3}"),
    (r"2\sqrt{3}", r"\sqrt{13}"),
    (r"\frac{\pi}{2}", r"\pi"),
    (r"\sqrt{2}", "1.41"),
    ("2^{10}", "1023"),
    ("x+1", "x-1"),
    ("3+4i", "3-4i"),
    ("x=3", "x=4"),
    (r"\infty", r"-\infty"),
    ("(1,2)", "[1,2]"),
    ("(1,2]", "(1,2)"),
    (r"\{1,2\}", r"\{1,3\}"),
    ("1,2", "1,2,3"),
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
    for a, b in TRUE[7:]:
        if not any(c in a + b for c in "#=") and "answer" not in a and "boxed" not in a:
            assert grade(b, a) is True, (b, a)


# -------------------------------------------------------------- other graders' public test cases

# (response, gold, verdict) from the public test suites of other graders, where they fit GSM8K/MATH
# grading (an answer against a reference answer); gold and prediction as the source has them,
# prose answers given their box. Cases where our conventions differ are in CONVENTIONS or noted.
PUBLIC = [
    # huggingface/Math-Verify tests/test_all.py (commit 5d148cf)
    (r"$\frac13 $", "1/3", True),
    (r"$\frac3{3} $", "1", True),
    (r"\sqrt3", r"\sqrt{3}", True),
    (r"\cfrac{1}{3}", "1/3", True),
    (r"\left( \frac{1}{3} \right)", "1/3", True),
    (r"$\frac{1}{3} \text{meters}$", "1/3", True),
    (r"$k = \frac{1}{3}$", "1/3", True),
    ("7,425,000", "7425000", True),
    ("1 000", "1000", True),
    (".4", "0.4", True),
    ("$1,000.99", "1000.99", True),
    (r"Thus $x-p=\boxed{2-2p}$.", "2-2p", True),
    (r"the sum is located between $\boxed{12\text{ and }13}$.", r"12 \text{ and } 13", True),
    (r"the polar coordinates are $\boxed{\left( 3, \frac{\pi}{2} \right)}.$", r"(3, \frac{\pi}{2})", True),
    (r"Therefore, $\boxed{\text{Evelyn}}$ is our answer.", r"\text{Evelyn}", True),
    (r"Hence, the angle between the lines is $\boxed{90^\circ}.$", r"90^\circ", True),
    (r"$$\frac{1}{2}\times 3 \times 10 = \boxed{15\mbox{ cm}^2}.$$", r"15\mbox{ cm}^2", True),
    (r"the only integer roots are $\boxed{-2,1}.$", "-2,1", True),
    (r"a quotient of $\boxed{204_5}$.", "204_5", True),
    (r"we find $(p,q,r) = \boxed{(6,31,-1)}.$", "(6,31,-1)", True),
    (r"By the quadratic formula, $x = \boxed{1 \pm \sqrt{19}}.$", r"1 \pm \sqrt{19}", True),
    (r"so the answer is $\boxed{\{1\pm\sqrt{5},-2\}}.$", r"\{1\pm\sqrt{5},-2\}", True),
    (r"Hence, $\boxed{f(2) < f(1) < f(4)}.$", "f(2) < f(1) < f(4)", True),
    (r"\[\sin (a + b) - \sin (a - b) = \boxed{2 \sin b \cos a}.\]", r"2 \sin b \cos a", True),
    (r"The answer is $\boxed{\sqrt 2+\sqrt 5}$", r"\sqrt{2}+\sqrt{5}", True),
    (r"Therefore $\boxed{\frac94\pi}$.", r"\frac{9}{4}\pi", True),
    (
        r"The solution set is $\boxed{[-1, -\tfrac12) \cup (-\tfrac12, 0) \cup (0, 1) \cup (1, \infty)}.$",
        r"[-1, -\frac{1}{2}) \cup (-\frac{1}{2}, 0) \cup (0, 1) \cup (1, \infty)",
        True,
    ),
    (r"\boxed{x \geq 5}", "x >= 5", True),
    (r"\boxed{x \lt 3}", "x < 3", True),
    (r"\boxed{x <= 2}", r"x \leq 2", True),
    (r"\boxed{x \neq 3}", "x != 3", True),
    (r"\boxed{x < 5}", "x > 5", False),
    (r"\boxed{x \leq 5}", r"x \geq 5", False),
    (r"\boxed{-x > -1}", "x < 1", True),
    (r"\boxed{x > -1}", "x < 1", False),
    (r"\boxed{x = 5+5+1 = 7 =11}", "x = 11", True),
    (r"\boxed{0}", "a +3z = 0", False),
    (r"\boxed{1}", "2x + z = 1", False),
    (r"\boxed{y=-\frac{1}{2}x+\frac{3}{4}}", "2x+4y-3=0", True),
    (r"\boxed{x^2/16 + y^2/12 = 1/4}", "x^2/4 + y^2/3 = 1", True),
    (
        r"\boxed{\left[\begin{array}{cc}1 & 2 \\3 & 4\end{array}\right]}",
        r"\begin{pmatrix}1 & 2 \\3 & 4\end{pmatrix}",
        True,
    ),
    (r"\boxed{0.0833333333333333}", r"\frac{1}{12}", True),
    (r"\boxed{(1,4.5)}", r"(1,\frac{9}{2})", True),
    (r"\boxed{\frac{x}{7}+\frac{2}{7}}", r"\frac{x+2}{7}", True),
    (r"\boxed{\sec^2(y)}", r"\tan^2(y)+1", True),
    (r"\boxed{-34x-45y+20z-100=0}", "34x+45y-20z+100=0", True),
    (r"\boxed{(+5)(b+2)}", "(a+5)(b+2)", False),
    (r"\boxed{\frac{1+\sqrt{5}}{2}}", "2", False),
    (r"\boxed{\frac{34}{16}+\frac{\sqrt{1358}}{16}}", "4", False),
    (r"\boxed{1}", r"1\sqrt{19}", False),
    (r"\boxed{x+1}", "x+2n+1", False),
    (r"$\boxed{\text{(C)}}.$", r"\text{C}", True),
    (r"is $\boxed{11,\! 111,\! 111,\! 100}$", "11111111100", True),
    (r"is $\boxed{32,\! 349}$", "32349", True),
    (r"is $\boxed{32, 349}$", "32349", False),
    (r"Thus, the answer is $x \in \boxed{(2,12) \cup (12,102)}$", r"(2, 12) \cup (12, 102)", True),
    (r"\boxed{4\sqrt{2}}", "4", False),
    # huggingface/Math-Verify tests/test_numina_cases.py (commit 5d148cf)
    (r"$\boxed{\{-12, -11, -10, -8, -7, -6\}}$", "-12,-11,-10,-8,-7,-6", True),
    (r"\boxed{(3,2,7)}", "(p,q,r)=(3,2,7)", True),
    (r"\boxed{(3,2)}", "(p,q)=(3,2)", True),
    # QwenLM/Qwen2.5-Math evaluation/grader.py, _test_math_equal (commit a45202b)
    (
        r"\boxed{\begin{pmatrix}-\frac{7}{4}&-2\\4&\frac{1}{4}\end{pmatrix}}",
        r"(\begin{pmatrix}-\frac{7}{4}&-2\\4&\frac{1}{4}\\\end{pmatrix})",
        True,
    ),
    (
        r"\boxed{\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{2\sqrt{33}+15}}",
        r"\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{15+2\sqrt{33}}",
        True,
    ),
    (r"\boxed{\frac{100}{3}}", "33.3", False),  # Qwen: True (relative tolerance); ours: 6 decimal places
    (r"\boxed{(0.6,2.6667]}", r"(\frac{3}{5},\frac{8}{3}]", False),  # idem
    # NVIDIA/NeMo-Skills tests/test_math_equal.py (commit 0b012df)
    ("5", "5.0", True),
    ("1/2", "0.5", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"918\frac{1}{2}", "918.5", True),
    ("x^2+2x+1", "x^2 + 2*x + 1", True),
    ("x^2+2x+1", "x^2 + 2*x - (-1)", True),
    ("y = x^2+2x+1", "2x+ 1+x^2", True),
    ("E", r"\mathrm{E}", True),
    ("A", r"\textbf{A}", True),
    ("185", "185\\", True),
    (".185", "0.185", True),
    (r"\frac {1}{2}", "0.5", True),
    (r"17\text{ any text}", "17", True),
    (r"\$10", "10", True),
    ("10%", "10", True),
    (r"10\%", "10", True),
    ("2.5", r"\frac{5}{2}", True),
    (r"\frac{1}{3}", r"\dfrac{1}{3}", True),
    ("(r+5)(r+5)", "(r+5)^2", True),
    (r"\frac{\sqrt{3}}{3}", r"\frac{\sqrt{3}}{3} \approx 0.577", True),
    (
        r"\begin{pmatrix}0&0&0\\0&1&0\\0&0&1\end{pmatrix}",
        r"\begin{bmatrix} 0 & 0 & 0 \\ 0 & 1 & 0 \\ 0 & 0 & 1 \end{bmatrix}",
        True,
    ),
    ("5", "5.001", False),
    ("x^2+2x+1", "x^3+2x+1", False),
    ("odd", r"\text{oddd}", False),
    ("E", r"\mathrm{E}*2", False),
    (r"\sqrt{67},-\sqrt{85}", r"\sqrt{67}", False),
    # hendrycks/math modeling/math_equivalence_test.py (commit 985bdc1); its test_order and
    # test_decimals (lists in another order: wrong) are in CONVENTIONS: lists are sets here
    (r"\tfrac{1}{2} + \frac1{72}", r"\\frac{1}{2} + 2/3", False),
    ("10, 4, 2", "4, 12, 2", False),
    (r"\tfrac{1}{2} +\! \frac1{72}", r"\\dfrac{1}{2} +\frac{1}{72}", True),
    (r"10\text{ units}", "10 ", True),
    (r"10\text{ units}", "100 ", False),
    ("10", r"\$10", True),
    (r"\left(x-2\right)\left(x+2\right)", "(x-2)(x+2)", True),
    ("0.1", ".1", True),
    (r"10\%", "10", True),
    (r"10\sqrt{3} + \sqrt4", r"10\sqrt3 + \sqrt{4}", True),
    (r"\frac34i", r"\frac{3}{4}i", True),
    (r"\tfrac83", r"\frac{8}{3}", True),
    ("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0", False),
    ("1/2", r"\frac{1}{2}", True),
]


@pytest.mark.parametrize("response, gold, verdict", PUBLIC)
def test_public_cases(response, gold, verdict):
    assert grade(response, gold) is verdict


def test_public_cases_both_ways_for_nemo_skills():
    """NeMo-Skills checks each of its pairs in both orders; so do we, for its bare pairs."""
    start = PUBLIC.index(("5", "5.0", True))
    for response, gold, verdict in PUBLIC[start : start + 26]:
        assert grade(gold, response) is verdict, (gold, response)


# ------------------------------------------------------------------------- adversarial inputs

ADVERSARIAL = [
    (r"\boxed{10^{10^{10}}}", "1"),
    (r"9^{9^{9^{9}}}", "1"),
    (r"\boxed{2^{99999999}}", "1"),
    (r"\boxed{{10^{10}}^{10^{10}}}", "1"),
    (r"\boxed{2^{9999}^{9999}}", "1"),
    (r"\boxed{99999!}", "1"),
    (r"\boxed{(10^{4})!}", "1"),
    (r"\boxed{(3^{9999})^{9999}}", "1"),  # hangs sympy: only the time limit stops it
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
    ("\\boxed{∞ π ½ 你好 \U0001f600}", "1"),
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
    (r"\boxed{1}\boxed{", "2"),
    ('\\boxed{"]\n["}', "1"),
]


@pytest.mark.parametrize("response, gold", ADVERSARIAL)
def test_adversarial_inputs_are_false_and_fast(response, gold):
    start = time.perf_counter()
    assert grade(response, gold) is False
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------------------ the worker


def test_worker_is_replaced_after_a_timeout():
    assert grade(r"\sqrt{12}", r"2\sqrt{3}") is True  # the worker is up
    first = grading._WORKER.proc.pid
    start = time.perf_counter()
    assert grade(r"(5^{9999})^{9999}", "1", timeout=0.5) is False  # hangs sympy: killed
    assert time.perf_counter() - start < 2.0
    assert grading._WORKER.proc.pid != first  # a fresh worker is already starting
    assert grade(r"3\sqrt{2}", r"\sqrt{18}") is True  # and answers
    assert grading._WORKER.proc.poll() is None


def test_too_small_a_budget_gives_false_not_an_error():
    assert grade(r"\sin^2 y + \cos^2 y", "1", timeout=1e-4) is False
    assert grade(r"\sin^2 y + \cos^2 y", "1") is True


def test_worker_crash_is_survived():
    assert grade(r"4\sqrt{2}", r"\sqrt{32}") is True
    grading._WORKER.proc.kill()
    grading._WORKER.proc.wait()
    assert grade(r"5\sqrt{2}", r"\sqrt{50}") is True  # a dead worker is replaced
    assert grading._WORKER.proc.poll() is None


def test_worker_outlives_the_signals_that_stop_a_run():
    """Ctrl-C and SIGTERM reach the worker too (same process group): the run finishes its iteration, grades
    included, so the worker must not die of them."""
    import signal

    assert grade("3", "3") is True
    worker = grading._WORKER.proc
    for stop in (signal.SIGINT, signal.SIGTERM):
        worker.send_signal(stop)
    assert grade(r"\frac{1}{2}", "0.5") is True
    assert grading._WORKER.proc is worker and worker.poll() is None


def test_grading_works_off_the_main_thread():
    """math-verify's own timeouts use SIGALRM, main thread only: they are off in the worker."""
    results = []
    thread = threading.Thread(target=lambda: results.append(grade(r"\boxed{\frac{6}{8}}", "0.75")))
    thread.start()
    thread.join(30)
    assert results == [True]


def test_a_repeated_answer_never_reaches_the_worker_twice(monkeypatch):
    calls = []
    equal = grading._WORKER.equal
    monkeypatch.setattr(grading._WORKER, "equal", lambda *args: calls.append(args) or equal(*args))
    for filler in range(50):  # different completions, one answer
        assert grade(f"Step {filler}: ... so $\\boxed{{\\frac{{9}}{{12}}}}$.", r"\frac34") is True
    assert grade("#### 12", "12") is True  # plain numbers never reach it
    assert grade("#### 13", "12") is False
    assert len(calls) == 1


def test_grade_never_raises(monkeypatch):
    def boom(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(grading, "_clean", boom)
    assert grade("5", "5") is False
    monkeypatch.undo()
    assert grade("5", "5") is True


def test_a_worker_that_cannot_start_is_an_error_not_wrong_answers(monkeypatch):
    """Without math-verify every grade would be False: training on that must not go unnoticed."""
    monkeypatch.setattr(grading, "_WORKER_BOOT", "print('error: No module named math_verify')")
    monkeypatch.setattr(grading, "_WORKER", grading._Worker())
    grading._answers_equal.cache_clear()
    with pytest.raises(GraderUnavailable, match="^error: the grading worker did not start .*math_verify"):
        grade(r"\boxed{\sqrt{4}}", "2")
    assert grade("#### 2", "2") is True  # plain numbers are still graded in the parent
