r"""Answer extraction and equivalence checking for maths completions.

``extract_answer`` takes the final answer out of a completion: the last ``\boxed{}`` or ``\fbox{}``
(brace-matched, so nested braces work), else GSM8K's ``#### N``, else "the answer is ...", else
the last number in the text.

``grade`` compares it with the reference answer in steps of increasing cost, following the
Hendrycks MATH, PRM800K and Minerva graders:

1. string equality after ``_normalize`` (spacing, ``\left``, ``\dfrac``, units in ``\text{}``,
   degrees, percent and dollar signs, thousands separators, an ``x =`` prefix, ...);
2. structure: tuples and intervals are compared element by element (brackets must match);
   sets, bare comma-separated lists and unions of intervals in any order;
3. exact rational arithmetic when both sides are plain numbers (``12``, ``-0.5``, ``3/4``,
   ``\frac{3}{4}``); only a decimal compared with a fraction gets a relative tolerance of 1e-4;
4. sympy for the rest: our own small LaTeX-to-Python converter (``_to_sympy``) feeds
   ``parse_expr``, and two expressions are equal if their difference is zero (numerically, to
   30 digits, for constants; by ``simplify`` when symbols remain).

Step 4 runs in a persistent worker process, because sympy can run for minutes or exhaust memory
on innocent-looking input, and a Python thread cannot be interrupted. The worker is started with
``subprocess`` (fork+exec: safe in a trainer that holds CUDA/vLLM threads, and unlike
``multiprocessing``'s spawn it does not re-import the trainer's ``__main__``); when a grade's
budget (``SYMPY_TIMEOUT``) runs out it is killed, and the next call starts a fresh one. Overlong
inputs, exponent towers and big factorials never reach sympy, and ``parse_expr`` (which calls
``eval``) sees only a whitelisted vocabulary. ``grade`` never raises.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction

SYMPY_TIMEOUT = 1.0  # seconds of sympy per grade() call
MAX_ANSWER_LEN = 1000  # longer answers are wrong without further ado
MAX_SYMPY_LEN = 300  # longer answers never reach sympy
REL_TOL = Fraction(1, 10_000)  # a decimal may approximate a fraction or an irrational this closely
WORKER_MEMORY = 2 << 30  # address-space limit of the sympy worker, bytes

# ----------------------------------------------------------------------------------- extraction


def _match_brace(s: str, i: int) -> int:
    """Index of the brace that closes the ``{`` at ``s[i]`` (skipping ``\\{``, ``\\}``), or -1."""
    depth, j = 0, i
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)")
_BARE_BOXED_RE = re.compile(r"\s+([^\s$]+)")  # \boxed 5
_HASHES_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"(?i)\b(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]*)")
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _last_boxed(text: str) -> str | None:
    for start in reversed([m.end() for m in _BOXED_RE.finditer(text)][-3:]):  # an empty or broken
        if text.startswith("{", start):  # box falls back to the one before it, three at most
            end = _match_brace(text, start)
            content = text[start + 1 : end] if end > 0 else ""
        else:
            m = _BARE_BOXED_RE.match(text, start)
            content = m.group(1) if m else ""
        if content.strip():
            return content.strip()
    return None


def _extract(text: str) -> tuple[str | None, str | None]:
    """(answer, how it was found): how is 'boxed', 'hashes', 'answer_is', 'number' or None."""
    if not isinstance(text, str):
        return None, None
    if (boxed := _last_boxed(text)) is not None:
        return boxed, "boxed"
    hashes = [a.strip() for a in _HASHES_RE.findall(text) if a.strip()]
    if hashes:
        return hashes[-1], "hashes"
    stated = [m.group(1) for m in _ANSWER_IS_RE.finditer(text)]
    if stated:
        answer = re.split(r"\.(?:\s|$)", stated[-1])[0].strip().strip("$*: ")
        if answer:
            return answer, "answer_is"
    number = None
    for number in _NUMBER_RE.finditer(text):
        pass
    return (number.group(), "number") if number else (None, None)


def extract_answer(text: str) -> str | None:
    """The final answer of a model completion, or None when there is none."""
    return _extract(text)[0]


# -------------------------------------------------------------------------------- normalisation

_REPLACEMENTS = [
    ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""),
    ("\\ ", " "), ("\\qquad", " "), ("\\quad", " "), ("\\displaystyle", ""),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\lbrace", "\\{"), ("\\rbrace", "\\}"),
    ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("°", ""), ("\\%", ""), ("%", ""),
    ("\\$", ""), ("$", ""), ("{,}", ","), ("**", "^"),
]  # fmt: skip
_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit)\s*\{")
_UNIT_RE = re.compile(r"[A-Za-z][A-Za-z\s.]*")
_UNIT_POWER_RE = re.compile(r"\s*\^\s*(?:\{\d\}|\d)")
_BARE_UNIT_RE = re.compile(r"(-?[\d.,]*\d)\s+([A-Za-z][A-Za-z.\s]*)")  # "12 dollars"
_SPACE_RE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])|\s+")  # keep the space in "\pi x"
_VAR_RE = re.compile(r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?(?:\([a-z]\))?(?:=|\\in(?![a-zA-Z]))(.+)")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _strip_text(s: str) -> str:
    r"""Unwrap ``\text{...}``, or drop it if it follows a value (a unit: ``5\text{ cm}^2`` -> 5)."""
    out, i = [], 0
    while m := _TEXT_RE.search(s, i):
        end = _match_brace(s, m.end() - 1)
        if end < 0:
            break
        out.append(s[i : m.start()])
        word, i = s[m.end() : end].strip(), end + 1
        if word in ("and", "or"):
            out.append(",")
        elif "".join(out).strip() and _UNIT_RE.fullmatch(word):
            if power := _UNIT_POWER_RE.match(s, i):
                i = power.end()
        else:
            out.append(word)
    return "".join(out) + s[i:]


def _strip_var(s: str) -> str:
    """'x=3' -> '3', 'x\\in[1,2]' -> '[1,2]', unless the right-hand side is an equation too."""
    m = _VAR_RE.fullmatch(s)
    return m.group(1) if m and "=" not in m.group(1) else s


@functools.lru_cache(maxsize=1 << 14)
def _normalize(s: str) -> str:
    s = s.strip()
    for old, new in _REPLACEMENTS:
        s = s.replace(old, new)
    s = _strip_text(s).strip()
    if (m := _BARE_UNIT_RE.fullmatch(s)) and all(
        len(w) > 1 and w != "pi" for w in m.group(2).replace(".", " ").split()
    ):
        s = m.group(1)
    s = _SPACE_RE.sub(lambda m: m.group(1) + " " if m.group(1) else "", s).rstrip(".")
    s = re.sub(r"\\frac\s?(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\s?(\d)\{", r"\\frac{\1}{", s)  # \frac1{x}
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)  # \frac{x}2
    s = re.sub(r"\\sqrt\s?(\w)", r"\\sqrt{\1}", s)  # \sqrt2
    s = re.sub(r"(?<![\w}.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # 5.00 -> 5
    s = re.sub(r"^\(([A-E])\)$", r"\1", s)  # multiple choice: (B) -> B
    return _strip_var(s)


# ---------------------------------------------------------------------- numbers and structures

_DEC = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_DEC_RE = re.compile(_DEC)
_FRAC_RES = (re.compile(rf"(-?)\\frac\{{({_DEC})\}}\{{({_DEC})\}}"), re.compile(rf"()({_DEC})/({_DEC})"))
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def _to_number(s: str) -> tuple[Fraction, str] | None:
    """(value, kind) for a plain number, kind being 'int', 'dec' or 'frac'; else None."""
    if _DEC_RE.fullmatch(s):
        return Fraction(s), "dec" if "." in s else "int"
    for pattern in _FRAC_RES:
        if (m := pattern.fullmatch(s)) and Fraction(m[3]) != 0:
            value = Fraction(m[2]) / Fraction(m[3])
            return -value if m[1] else value, "frac"
    return None


def _numbers_equal(x: tuple[Fraction, str], y: tuple[Fraction, str]) -> bool:
    (a, kind_a), (b, kind_b) = x, y
    if a == b:
        return True
    return {kind_a, kind_b} == {"dec", "frac"} and abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _top_split(s: str, sep: str = ",") -> list[str]:
    """Split s at the occurrences of sep that are outside all brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    return parts + [s[start:]]


def _encloses(s: str) -> bool:
    """Whether the bracket opening s closes at its very end: '(1,2]' yes, '(1)+(2)' no."""
    depth = 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if depth == 0 and i < len(s) - 1:
            return False
    return depth == 0


def _split(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) of a set, union, tuple/interval (kind: its brackets) or list; else None."""
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s[1:]):
        return "set", _top_split(s[2:-2])
    if len(parts := _top_split(s, "\\cup")) > 1:
        return "union", parts
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        if len(parts := _top_split(s[1:-1])) > 1:
            return s[0] + s[-1], parts
    parts = _top_split(s)
    return ("list", parts) if len(parts) > 1 else None


def _equal(a: str, b: str, deadline: float, depth: int = 0) -> bool:
    a, b = _strip_var(a), _strip_var(b)
    if a == b:
        return True
    split_a, split_b = _split(a), _split(b)
    if split_a is None and split_b is None:
        return _scalar_equal(a, b, deadline)
    if split_a is None or split_b is None or depth > 8:
        return False
    (kind_a, xs), (kind_b, ys) = split_a, split_b
    if len(xs) != len(ys) or len(xs) > 32:
        return False
    if {kind_a, kind_b} <= {"set", "list"} or kind_a == kind_b == "union":  # any order
        unused = list(ys)
        for x in xs:
            k = next((k for k, y in enumerate(unused) if _equal(x, y, deadline, depth + 1)), None)
            if k is None:
                return False
            unused.pop(k)
        return True
    return kind_a == kind_b and all(_equal(x, y, deadline, depth + 1) for x, y in zip(xs, ys))


def _scalar_equal(a: str, b: str, deadline: float) -> bool:
    x, y = _to_number(a), _to_number(b)
    if x and y:
        return _numbers_equal(x, y)
    if _WORD_RE.fullmatch(a) or _WORD_RE.fullmatch(b):  # words never reach sympy: no == on as n*o
        return a.lower() == b.lower()
    expr_a, expr_b = _to_sympy(a), _to_sympy(b)
    if expr_a is None or expr_b is None:
        return False
    if expr_a == expr_b:
        return True
    budget = deadline - time.monotonic()
    return budget > 0 and _WORKER.equal(expr_a, expr_b, budget)


# ------------------------------------------------------------------------ LaTeX -> sympy input

_GREEK = "alpha beta gamma delta epsilon zeta eta theta iota kappa mu nu xi rho sigma tau phi chi psi omega"
_COMMANDS = {
    **{name: name for name in "sin cos tan cot sec csc sinh cosh tanh log exp pi".split()},
    **{name: name for name in _GREEK.split()},
    "lambda": "lamda", "ln": "log", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
    "infty": "oo", "cdot": "*", "times": "*", "div": "/",
}  # fmt: skip
_COMMAND_RE = re.compile(r"\\([a-zA-Z]+|.)")
_EXPONENT_RE = re.compile(r"-?\d+")
_BIG_FACTORIAL_RE = re.compile(r"\d{4,}!|[)}\]]!")
_SAFE_RE = re.compile(r"[\w\s+\-*/().,!]*")


def _argument(s: str, i: int) -> tuple[str, int]:
    """The argument at s[i] of a LaTeX command: a {group}, a \\command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] == "{":
        end = _match_brace(s, i)
        if end < 0:
            raise ValueError("unbalanced braces")
        return s[i + 1 : end], end + 1
    if s[i] == "\\":
        m = _COMMAND_RE.match(s, i)
        return m.group(), m.end()
    return s[i], i + 1


def _convert(s: str) -> str:
    """LaTeX to a string for sympy's parse_expr; raises ValueError on what it doesn't know."""
    out, i = [], 0
    while i < len(s):
        c, prev = s[i], (out[-1][-1:] if out else "")
        if c == "\\":
            name = _COMMAND_RE.match(s, i).group(1)
            i += 1 + len(name)
            if name in ("frac", "binom"):
                a, i = _argument(s, i)
                b, i = _argument(s, i)
                if name == "frac":
                    out.append(f"(({_convert(a)})/({_convert(b)}))")
                else:
                    out.append(f"binomial({_convert(a)},{_convert(b)})")
            elif name == "sqrt":
                index = "2"
                if s.startswith("[", i):
                    end = s.index("]", i)
                    index, i = s[i + 1 : end], end + 1
                a, i = _argument(s, i)
                out.append(f"(({_convert(a)})**(1/({_convert(index)})))")
            elif name in _COMMANDS:
                out.append(f" {_COMMANDS[name]} ")
            else:
                raise ValueError(f"unsupported command {name}")
        elif c == "^":
            if m := _EXPONENT_RE.match(s, i + 1):  # 2^10 means 2^{10} here
                exponent, i = m.group(), m.end()
            else:
                exponent, i = _argument(s, i + 1)
            if "^" in exponent or re.search(r"\d{5}", exponent) or s.startswith("^", i):
                raise ValueError("exponent too big")
            out.append(f"**({_convert(exponent)})")
        elif c == "_":
            sub, i = _argument(s, i + 1)
            if not (sub.isalnum() and prev.isalpha()):
                raise ValueError("unsupported subscript")
            out.append("_" + sub)
        elif c == "{":
            group, i = _argument(s, i)
            out.append(f"({_convert(group)})")
        elif c == "}":
            raise ValueError("unbalanced braces")
        else:
            if (c.isalpha() and prev.isdigit()) or (c.isdigit() and prev.isalpha()):
                out.append(" ")  # 2x -> 2 x (not the literal 2j), x2 -> x 2
            out.append({"[": "(", "]": ")"}.get(c, c))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1 << 14)
def _to_sympy(s: str) -> tuple[str, bool] | None:
    """(parse_expr input, whether s is an equation) or None when s must not reach sympy."""
    if len(s) > MAX_SYMPY_LEN or _BIG_FACTORIAL_RE.search(s):
        return None
    lhs, equation, rhs = s.partition("=")
    try:
        expr = f"({_convert(lhs)})-({_convert(rhs)})" if equation else _convert(s)
    except (ValueError, IndexError, AttributeError, RecursionError):
        return None
    if "=" in rhs or not _SAFE_RE.fullmatch(expr) or "__" in expr or re.search(r"\.(?!\d)", expr):
        return None  # no attribute access and no dunders: parse_expr calls eval
    return expr, bool(equation)


# --------------------------------------------------------------------------- the sympy worker

_WORKER_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__sympy_worker__')"


def _serve() -> None:
    """Worker main loop: read JSON [expr_a, is_eq_a, expr_b, is_eq_b] lines, answer '1' or '0'."""
    import sympy
    from sympy.parsing.sympy_parser import implicit_multiplication_application as implicit
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    try:  # a runaway computation should fail with MemoryError, not take the machine down
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = WORKER_MEMORY if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    names = "Integer Float Rational Symbol Function factorial factorial2 sqrt root log exp sin cos"
    names += " tan cot sec csc asin acos atan sinh cosh tanh pi oo E I binomial Abs"
    namespace = {name: getattr(sympy, name) for name in names.split()}
    namespace["__builtins__"] = {}  # nothing else is callable from parse_expr's eval
    transformations = standard_transformations + (implicit,)

    def parse(expr):
        local = {"e": sympy.E, "i": sympy.I}
        return sympy.sympify(parse_expr(expr, local, transformations, namespace))

    def equal(expr_a, eq_a, expr_b, eq_b):
        if eq_a != eq_b:
            return False
        a, b = parse(expr_a), parse(expr_b)
        tol = 1e-4 if a.has(sympy.Float) or b.has(sympy.Float) else 1e-20

        def same(x, y):
            d = x - y
            if d == 0:
                return True
            if d.free_symbols:
                return sympy.simplify(d) == 0
            dv, xv, yv = (abs(sympy.N(t, 30)) for t in (d, x, y))
            return all(v.is_finite for v in (dv, xv, yv)) and bool(dv <= tol * max(xv, yv))

        return same(a, b) or (eq_a and same(a, -b))  # x+y=1 is also 1=x+y

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            ok = equal(*json.loads(line))
        except Exception:  # also MemoryError and RecursionError
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()


class _SympyWorker:
    """Client of the worker process: one request at a time, killed and restarted on timeout."""

    def __init__(self):
        self.proc, self.owner, self.buffer = None, None, b""
        self.lock = threading.Lock()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )  # fmt: skip
        self.owner, self.buffer = os.getpid(), b""
        if self._readline(60.0) != b"ready":
            self.close()
            raise RuntimeError("sympy worker failed to start")

    def _readline(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:  # the worker died
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        if self.proc is not None and self.owner == os.getpid():  # never kill a parent's worker
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def equal(self, a: tuple[str, bool], b: tuple[str, bool], timeout: float) -> bool:
        with self.lock:
            if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
                self.close()
                self._start()
            try:
                self.proc.stdin.write(json.dumps([*a, *b]).encode() + b"\n")
                line = self._readline(timeout)
            except OSError:
                line = None
            if line is None:
                self.close()
            return line == b"1"


_WORKER = _SympyWorker()
atexit.register(_WORKER.close)

# ------------------------------------------------------------------------------------- grading


@functools.lru_cache(maxsize=1 << 14)
def _answers_equal(answer: str, gold: str, timeout: float) -> bool:
    if len(answer) > MAX_ANSWER_LEN or len(gold) > MAX_ANSWER_LEN:
        return False
    a, b = _normalize(answer), _normalize(gold)
    return bool(a and b) and _equal(a, b, time.monotonic() + timeout)


def grade(response: str, gold: str, timeout: float = SYMPY_TIMEOUT) -> bool:
    """Whether a completion (or a bare answer) is correct for the reference final answer gold."""
    try:
        if not isinstance(response, str) or not isinstance(gold, str):
            return False
        answer, how = _extract(response)
        candidates = [] if answer is None else [answer]
        bare = response.strip()
        if how in (None, "number") and len(bare) <= 100 and bare != answer:
            candidates.append(bare)  # a bare answer such as \frac{1}{2}, not just its last number
        return any(_answers_equal(c, gold.strip(), timeout) for c in candidates)
    except Exception:
        return False


if __name__ == "__sympy_worker__":
    _serve()
