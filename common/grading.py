r"""Answer extraction and equivalence checking for maths completions, graded with math-verify.

``extract_answer`` finds the final answer the way our prompts ask for it, first that applies:

1. the last ``\boxed{}`` or ``\fbox{}`` (brace-matched; an empty box falls back to the one before);
2. GSM8K's ``#### N`` (the last one);
3. a stated answer: the last "answer is X" or "answer: X", which covers "the answer is X", "the final
   answer is X" and Minerva's "Final Answer: The final answer is $X$. I hope it is correct."; X is
   the content of the ``$...$`` (or ``\(...\)``, ``\[...\]``) that follows, else the rest of the
   sentence;
4. a bare answer: the whole response when it is one short line of mathematics, not prose
   (``\frac{1}{2}``, ``x = 3``, ``(1, 2]``, ``\text{Monday}``);
5. an unmarked completion (free text such as GSM8K-style "... so she has 18 apples."): its last
   number, but only when that number stands alone: a whole token (``18``, ``-2.5``, ``1,234``,
   ``3/4``, ``50%``) that is not part of an expression, a fraction, a power, an interval or a list.
   When the last number is ``\frac12``'s 2, ``2^{10}``'s 10, ``[0,1)``'s 1, ``1, 2``'s 2 or the 2
   of "Thus $x=\frac{7}{2}$.", the completion has no answer (None) and is wrong. So on a
   GSM8K-style integer gold an unboxed completion is right when its last number stands alone and
   equals the gold, as lm-eval's and Qwen's last-number GSM8K graders do, minus their digits taken
   from inside expressions; the papers' GSM8K models end with ``#### N``, which is rule 2.

``grade`` parses the extracted answer and the reference and verifies them with math-verify
(``math_verify.parse`` of the answer wrapped in ``\boxed{}``, LaTeX extraction only, then
``math_verify.verify(gold, answer)``). Conventions where graders disagree:

- several boxes: the last one is the answer (as Hendrycks' and Qwen's ``last_boxed_only_string``),
  so boxing several candidates cannot hedge; math-verify's own extraction would accept any box.
- lists: a bare comma list, ``1 and 2`` and ``\{1, 2\}`` are sets: any order, repeats ignored
  (math-verify's FiniteSet). Tuples and intervals are ordered; ``(1,2)`` matches the list ``1,2``
  written in that order. Hendrycks' string grader, unlike us, rejects ``4, 10, -2`` for ``10, 4, -2``.
- ``\pm`` is expanded: ``1 \pm \sqrt{2}`` is the set of both roots, so it equals neither root alone.
- percent: ``X\%`` (or ``X%``) is X/100 and also matches a bare X: ``50\%`` equals ``50``,
  ``0.5`` and ``\frac12``; a bare ``0.5`` does not match ``50`` (math-verify).
- decimals must equal the exact value when both are rounded to 6 decimal places (math-verify's
  ``float_rounding=6``): ``0.333333`` is ``\frac13`` but ``0.3333`` is not; Qwen's grader and our
  former one accepted a relative error of 1e-4.
- numbers: ``1,234``, ``1{,}234``, ``1,\!234`` and ``1 234`` are one number; ``32, 349`` (comma
  and space) is a list. ``2\frac{1}{2}`` is the mixed number 5/2.
- words (``\text{Evelyn}``, ``odd``, ``no solution``) are compared as case-insensitive strings, never
  by sympy, which reads ``no`` as n*o and would accept ``on``.
- equations: ``x = 3`` matches ``3``, ``(p,q)=(3,2)`` matches ``(3,2)``; ``2x = 4`` does not match
  ``x = 2``; ``\ge``, ``\geq`` and ``>=`` are one relation.

Parsing and verification run in a persistent worker process, because sympy can run for minutes or
exhaust memory on innocent-looking input, and a Python thread cannot be interrupted. The worker is
started with ``subprocess`` (fork+exec: safe in a trainer that holds CUDA/vLLM threads, and unlike
``multiprocessing``'s spawn it does not re-import the trainer's ``__main__``); math-verify's own
timeouts are off in it (they use SIGALRM), and when a grade's budget (``GRADE_TIMEOUT``) runs out
the worker is killed and a fresh one is started at once. The worker parses each reference once
and keeps it. The parent never imports sympy: it caches verdicts by (extracted answer, reference),
so a repeated answer never crosses the pipe, and it settles plain numbers (``12`` vs ``12.00``)
and identical strings itself. ``grade`` never raises on model output; it raises
``GraderUnavailable`` when the worker cannot start at all (math-verify missing).
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
from collections import deque
from fractions import Fraction

GRADE_TIMEOUT = 1.0  # seconds of parsing and verification per grade() call
WORKER_START_TIMEOUT = 60.0  # seconds for the worker to import math-verify
MAX_ANSWER_LEN = 1000  # longer answers (or references) are wrong without further ado
MAX_BARE_LEN = 100  # a longer response is not a bare answer
WORKER_MEMORY = 2 << 30  # address-space limit of the worker, bytes


class GraderUnavailable(SystemExit):
    """The grading worker cannot start (math-verify missing?): every grade would be wrong, so the run ends with one
    `error:` line (a SystemExit: no traceback)."""


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
_ANSWER_IS_RE = re.compile(r"(?i)\banswer(?:\s+is\b|\s*:)(?:\s*:)?")
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# a number next to one of these is part of an expression, not the answer ("=" may precede it: 3*6=18)
_OPERATORS = ("+", "-", "/", "^", "_", "×", "÷", "·", "\\cdot", "\\times", "\\div", "\\pm", "\\mp")
_LIST_BEFORE_RE = re.compile(r"\d\s*(?:,|\band\b|\bor\b)\s*$")  # "1, 2", "3 and 4": a list
_TEXT_GROUP_RE = re.compile(r"\\(?:text\w*|mbox|math\w+|operatorname|begin|end)\s*\{[^{}]*\}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_CONJUNCTION_RE = re.compile(r"\\text\s*\{\s*(?:and|or)\s*\}|\s(?:and|or)\s")
_PLUS_MINUS_RE = re.compile(r"\\pm|\\mp|±|∓")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    matches = deque(pattern.finditer(text), maxlen=1)
    return matches[0] if matches else None


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


def _stated_answer(text: str) -> str | None:
    """X in the last "answer is X" / "answer: X": a ``$...$`` right after it, else the sentence."""
    anchor = _last_match(_ANSWER_IS_RE, text)
    if anchor is None:
        return None
    rest = text[anchor.end() :].lstrip(" \t*")
    for opening, closing in _MATH_DELIMITERS:
        if rest.startswith(opening):
            end = rest.find(closing, len(opening))
            if end > 0:
                return rest[len(opening) : end].strip() or None
            rest = rest[len(opening) :]  # "$1,000." is a price, not a formula
            break
    answer = _SENTENCE_END_RE.split(rest.split("\n", 1)[0], maxsplit=1)[0]
    return answer.strip().strip("*").strip() or None


def _bare_answer(text: str) -> str | None:
    """The whole response, when it is one short line of mathematics rather than prose."""
    s = text.strip()
    if not s or len(s) > MAX_BARE_LEN or "\n" in s or _BOXED_RE.search(s):
        return None
    for opening, closing in _MATH_DELIMITERS:
        if s.startswith(opening) and s.endswith(closing) and len(s) > len(opening) + len(closing):
            s = s[len(opening) : -len(closing)].strip()
            break
    s = s.rstrip(".").strip()
    if "$" in s.replace("\\$", ""):  # several formulas in between words
        return None
    words = _WORD_RE.search(_CONJUNCTION_RE.sub(" ", _COMMAND_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", s))))
    if words and not s.isalpha():  # prose; a single word (Monday, yes) or "1 and 2" is an answer
        return None
    return s or None


def _standalone_number(text: str) -> str | None:
    """The last number of the text if it stands alone as a whole token, else None."""
    m = _last_match(_NUMBER_RE, text)
    if m is None:
        return None
    start, end = m.span()
    before, after, following = text[start - 1 : start], text[end : end + 1], text[end + 1 : end + 2]
    if before and not (before.isspace() or before in "$=:*"):  # \frac12, 2^{10}, [0,1), x2
        return None
    percent = "%" if after == "%" else "\\%" if text.startswith("\\%", end) else ""
    ends_sentence = after and after in ".,;:!?" and (not following or following.isspace() or following in "$*")
    if after and not (after.isspace() or after in "$*" or percent or ends_sentence):
        return None
    preceding = text[max(0, start - 40) : start].rstrip()
    if preceding.endswith(_OPERATORS) or (preceding.endswith("*") and not preceding.endswith("**")):
        return None
    if _LIST_BEFORE_RE.search(preceding):
        return None
    rest = text[end + len(percent) : end + len(percent) + 40].lstrip()
    if rest.startswith((*_OPERATORS, "=")) or (rest.startswith("*") and not rest.startswith("**")):
        return None
    return m.group() + percent


def extract_answer(text: str) -> str | None:
    """The final answer of a model completion (see the module docstring), or None when there is none."""
    if not isinstance(text, str):
        return None
    if (boxed := _last_boxed(text)) is not None:
        return boxed
    hashes = [a.strip() for a in _HASHES_RE.findall(text) if a.strip()]
    if hashes:
        return hashes[-1]
    if (stated := _stated_answer(text)) is not None:
        return stated
    if (bare := _bare_answer(text)) is not None:
        return bare
    return _standalone_number(text)


# -------------------------------------------------------------------- cleaning and fast paths

# 1,234 1{,}234 1,\!234 1\,234 1 234 (but "32, 349", comma and space, is a list)
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:(?:,\\!\s*|\{,\}|,|\\,|\\ |\\!| )\d{3})+(?:\.\d+)?")
_SEPARATORS_RE = re.compile(r"[, ]|\{,\}|\\!|\\,|\\ ")
_NUMBER_WITH_UNIT_RE = re.compile(r"(-?[\d.,]*\d)\s+([A-Za-z][A-Za-z.\s]*)")  # "12 dollars"
# exponent towers (10^{10^{10}}, 2^{9}^{9}), huge exponents and factorials: sympy would compute them
# for minutes; an answer shaped so is wrong unless its reference is shaped so too
_HOPELESS_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*-?\d+\s*\}?\s*\^|\^\s*\{?\s*-?\d{5,}|\d{4,}\s*!")
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_WORD_WRAPPER_RE = re.compile(r"\\(?:text\w*|mbox|math\w+)\s*\{([^{}]*)\}")


@functools.lru_cache(maxsize=1 << 16)
def _clean(answer: str) -> str:
    """Strip what a completion wraps its answer in; turn a number with separators or units into the number."""
    s = answer.strip()
    if (boxed := _last_boxed(s)) is not None:  # a reference given as a solution's \boxed{}
        s = boxed
    for opening, closing in _MATH_DELIMITERS:
        if s.startswith(opening) and s.endswith(closing) and len(s) > len(opening) + len(closing):
            s = s[len(opening) : -len(closing)]
            break
    s = s.strip().strip("*").strip().rstrip(".").strip()
    if s.endswith("\\") and not s.endswith("\\\\"):  # a stray backslash: 185\
        s = s[:-1].strip()
    if s.startswith("$") and "$" not in s[1:]:  # a price: $1,000
        s = s[1:].strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = _SEPARATORS_RE.sub("", s)
    if (m := _NUMBER_WITH_UNIT_RE.fullmatch(s)) and all(
        len(w) > 1 and w not in ("and", "or", "pi") for w in m.group(2).replace(".", " ").split()
    ):
        s = m.group(1).replace(",", "") if _THOUSANDS_RE.fullmatch(m.group(1)) else m.group(1)
    return s


def _plain_number(s: str) -> Fraction | None:
    return Fraction(s) if _PLAIN_NUMBER_RE.fullmatch(s) else None


def _item_count(s: str) -> int | None:
    """How many items a list answer has (1 for anything else), None when \\pm hides the count."""
    if _PLUS_MINUS_RE.search(s):
        return None
    s = _CONJUNCTION_RE.sub(",", s.replace("\\left", "").replace("\\right", "")).strip()
    if s.startswith("\\{") and s.endswith("\\}") and "\\}" not in s[2:-2]:  # a set: count its elements
        s = s[2:-2]
    elif s.startswith("{") and _match_brace(s, 0) == len(s) - 1:
        s = s[1:-1]
    depth, count = 0, 1
    for c in s:
        depth += (c in "([{") - (c in ")]}")
        count += c == "," and depth == 0
    return count


def _word(s: str) -> str | None:
    """A word answer (Evelyn, \\text{odd}, no solution) in lower case, or None."""
    s = _WORD_WRAPPER_RE.sub(r"\1", s).strip()
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1]
    words = s.split()
    if words and all(w.isalpha() and w.isascii() for w in words) and any(len(w) > 1 for w in words):
        return " ".join(words).lower()
    return None


# -------------------------------------------------------------------------------- the worker

_WORKER_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__grading_worker__')"


def _serve() -> None:
    """Worker main loop: read JSON [answer, gold] lines, answer '1' (equivalent) or '0'."""
    import signal

    # Ctrl-C and a scheduler's SIGTERM reach the whole process group, but the trainer goes on to finish its
    # iteration and needs its grades: the worker ends when the trainer closes its stdin or kills it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:  # a runaway computation should fail with MemoryError, not take the machine down
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = WORKER_MEMORY if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        from math_verify import LatexExtractionConfig, parse, verify
    except ImportError as e:
        sys.stdout.write(f"error: {e}; pip install math-verify\n")
        sys.stdout.flush()
        return
    # LaTeX only: math-verify's plain-expression fallback would pull a digit out of an answer
    # that does not parse; try_extract_without_anchor=False: only our \boxed{} wrapper counts
    config = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]

    @functools.lru_cache(maxsize=1 << 12)
    def parse_answer(answer: str) -> list:
        return parse("\\boxed{" + answer + "}", config, parsing_timeout=None)  # None: no SIGALRM

    golds = {}  # reference -> parsed, parsed once per worker

    def equal(answer: str, gold: str) -> bool:
        if gold not in golds:
            if len(golds) > 1 << 16:
                golds.clear()
            golds[gold] = parse_answer.__wrapped__(gold)
        return verify(golds[gold], parse_answer(answer), timeout_seconds=None)

    equal("1", "1")  # the first parse builds the LaTeX parser: not on a grade's budget
    golds.clear()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            ok = equal(*json.loads(line))
        except Exception:  # also MemoryError and RecursionError
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()


class _Worker:
    """Client of the worker process: one request at a time; on timeout it is killed and replaced."""

    def __init__(self):
        self.proc, self.owner, self.ready, self.buffer = None, None, False, b""
        self.lock = threading.Lock()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.owner, self.ready, self.buffer = os.getpid(), False, b""

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

    def _ensure_ready(self) -> None:
        if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
            self.close()
            self._spawn()
        if not self.ready:
            line = self._readline(WORKER_START_TIMEOUT)
            if line != b"ready":
                self.close()
                reason = line.decode(errors="replace") if line else "no answer"
                raise GraderUnavailable(
                    f"error: the grading worker did not start ({reason}); hint: pip install math-verify"
                )
            self.ready = True

    def equal(self, answer: str, gold: str, timeout: float) -> bool:
        with self.lock:
            self._ensure_ready()
            try:
                self.proc.stdin.write(json.dumps([answer, gold]).encode() + b"\n")
                line = self._readline(timeout)
            except OSError:
                line = None
            if line is None:  # over budget (or dead): a fresh worker starts while the caller goes on
                self.close()
                self._spawn()
            return line == b"1"


_WORKER = _Worker()
atexit.register(_WORKER.close)

# ------------------------------------------------------------------------------------- grading


@functools.lru_cache(maxsize=1 << 16)
def _answers_equal(answer: str, gold: str, timeout: float) -> bool:
    if not answer or not gold:
        return False
    if answer == gold:
        return True
    x, y = _plain_number(answer), _plain_number(gold)
    if x is not None and y is not None:
        if x == y:
            return True
        if abs(x - y) > Fraction(2, 10**6):  # math-verify rounds decimals to 6 places: never equal
            return False
    count_answer, count_gold = _item_count(answer), _item_count(gold)
    if None not in (count_answer, count_gold) and count_answer != count_gold:  # math-verify would
        return False  # compare sets: 1,1 would be 1, and (1,2) the list 1,2
    if _HOPELESS_RE.search(answer) and not _HOPELESS_RE.search(gold):
        return False
    word_answer, word_gold = _word(answer), _word(gold)
    if word_answer is not None or word_gold is not None:
        return word_answer == word_gold
    return _WORKER.equal(answer, gold, timeout)


def grade(response: str, gold: str, timeout: float = GRADE_TIMEOUT) -> bool:
    """Whether a completion (or a bare answer) is correct for the reference final answer gold."""
    try:
        if not isinstance(response, str) or not isinstance(gold, str):
            return False
        answer = extract_answer(response)
        if answer is None or len(answer) > MAX_ANSWER_LEN or len(gold) > MAX_ANSWER_LEN:
            return False  # (and the caches hold short strings only)
        return _answers_equal(_clean(answer), _clean(gold), timeout)
    except GraderUnavailable:
        raise
    except Exception:
        return False


def score(examples: list[dict], completions: list[list]) -> tuple[list[list[float]], list[list[float]]]:
    """The reward of each completion, one row per example: 1.0 when its final answer is right, else 0.0; a
    completion cut off at its token budget scores 0 whatever it holds, as in the papers' code (an unfinished answer
    is not an answer). Also 1.0 where no final answer can be extracted at all, else 0.0."""
    scores = [
        [float(not c.truncated and grade(c.text, e["answer"])) for c in cs] for e, cs in zip(examples, completions)
    ]
    return scores, [[float(extract_answer(c.text) is None) for c in cs] for cs in completions]


if __name__ == "__grading_worker__":
    _serve()
