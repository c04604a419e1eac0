r"""Reasoning steps as the official VinePPO code cuts them, and where they end in a response's tokens.

`vineppo.py` and `lilo_vineppo.py` cut their completions with these functions (`response_steps`, and the
value states in step 4 of their loop); docs/parity.md, rows 6 to 9, compares them with the reference.

The rules are re-implemented from reading McGill-NLP/VinePPO at commit efe7228 (the code behind the
paper's runs); paths below are inside that repository. All functions are pure: `split_gsm8k` and
`split_math` cut a completion's text into steps that concatenate back to the text exactly;
`step_token_ends` maps the cuts to token indices; `value_state_count` and `backfill_values` say which
step states get a Monte-Carlo value and what the others get.

Where the reference raises on a completion (its episode generator then drops the sample:
`episode_generators/math_episode_generator_with_mc_advantages.py:503-517`), these functions still
return steps, each case noted below.
"""

import hashlib
import re
from bisect import bisect_left

# ---------------------------------------------------------------------------------------- GSM8K

GSM8K_ANSWER_PREFIX = "\n#### "  # tasks/gsm8k.py:33, the default the paper's GSM8K task keeps
GSM8K_MAX_VALUE_STEP = 25  # configs/polIter_rho1bSft2_vineppo_GSM8K.jsonnet:15 (MATH configs set none)


def split_gsm8k(text: str) -> list[str]:
    r"""Steps of a GSM8K-format solution (`tasks/gsm8k.py:65-142`, `split_solution_into_intermediate_steps`).

    One step per line; each line break starts the step after it. Leading blank lines (whitespace
    only) join the first non-blank line; the "\n#### answer" tail joins the last non-blank line,
    together with any blank lines before the tail. Blank lines elsewhere stay steps of their own.
    The reference raises when "\n#### " occurs twice; here everything after the first one is the tail.
    """
    body, answer_prefix, answer = text.partition(GSM8K_ANSWER_PREFIX)
    lines = body.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    lines = ["\n".join(lines[: first + 1])] + lines[first + 1 :]
    if answer_prefix:
        last = next((i for i in reversed(range(len(lines))) if lines[i].strip()), 0)
        lines = lines[:last] + ["\n".join(lines[last:]) + answer_prefix + answer]
    return lines[:1] + ["\n" + line for line in lines[1:]]


# ----------------------------------------------------------------------------------------- MATH
# `tasks/math_extract_steps_inplace.py`, `split_solution_inplace` (lines 420-442), which the paper's MATH
# task uses: `configs/tasks/math_inplace_no_answer_prefix.jsonnet` sets `inplace_split_solution: true` and
# `answer_prefix: null`, so `tasks/math.py:431-432` splits the whole completion.

# Maths spans (lines 24-33), hidden in this order: a later pattern sees earlier spans as opaque tokens.
MATH_SPANS = [
    re.compile(p, re.DOTALL)
    for p in (
        r"\[asy\].*?\[/asy\]",
        r"\$\\begin\{tabular\}.*?\\end\{tabular\}\$",
        r"\\begin\{tabular\}.*?\\end\{tabular\}",
        r"\\\((.*?)\\\)",
        r"\\\[.*?\\\]",
        r"\$\$(.*?)\$\$",
        r"(?<!\\)\$(.*?[^\\])\$(?!\$)",  # so an unpaired "$5" pairs with the next "$", across lines
        r"\\begin\{([^}]*)\}.*?\\end\{\1\}",
    )
]
# A hidden span is a 60-character token, and lengths measured on hidden text count it so (line 7).
TOKEN = re.compile(r"<\|PLACEHOLDER_[0-9a-f]{32}_PLACEHOLDER\|>")
# A sentence ends at a period followed by white space and a capital, unless the period ends a
# one-letter word or a two-letter word after a space ("i.e.", "Mr.", "is.") (line 78).
SENTENCE_END = re.compile(r"(?<!\b[A-Za-z]\.)(?<!\s[A-Za-z]\.)(?<!\s[A-Za-z][A-Za-z]\.)(?<=\.)(?=\s+[A-Z])")
MATHS_SENTENCE_END = (".$", ".$$", ".\\)", ".\\]")  # maths ending a sentence (line 123)
OPENING = re.compile(r"\$|\$\$|\\\(|\\\[|\\begin\{[^}]*\}|\[asy\]")  # a line that only opens maths (lines 198-205)
MAX_PART_LENGTH = 100  # longer parts are cut again (lines 6, 411)
# Where a long part may be cut, each with the length of what stays before the cut: in words (lines
# 232-238; both halves then need 40 characters), else anywhere (lines 294-311; 20 characters).
WORD_CUTS = [(re.compile(p), n) for p, n in ((",", 1), (r"\sand\s", 4), (":", 1), (r"\sto\s", 3))]
MATHS_CUTS = [
    (re.compile(p), n)
    for p, n in ((r",\$", 2), (r",\\\)", 3), (r",\\\]", 3), ("=", 1), (r"\\equiv", 6), (r"\+", 1), (r"\\cancelto", 9))
]


def hide_maths(text: str) -> tuple[str, dict[str, str]]:
    """`text` with each maths span replaced by a token (the same maths, the same token), and token -> span."""
    spans = {}

    def hide(match: re.Match) -> str:
        token = f"<|PLACEHOLDER_{hashlib.md5(match.group().encode()).hexdigest()}_PLACEHOLDER|>"
        spans[token] = match.group()
        return token

    for pattern in MATH_SPANS:
        text = pattern.sub(hide, text)
    return text, spans


def show_maths(hidden: str, spans: dict[str, str]) -> tuple[str, list[int]]:
    """`hidden` with its maths back (spans inside spans too), and the offsets of the line breaks inside
    maths, where step 3 cuts. The reference restores a token everywhere in a part at once and cuts
    only at the first copy's line breaks (lines 176-190), so a repeated span is cut once."""
    text, cuts, seen, last = "", [], set(), 0
    for match in TOKEN.finditer(hidden):
        if match.group() not in spans:  # not one of ours: plain text
            continue
        maths = show_maths(spans[match.group()], spans)[0]
        text += hidden[last : match.start()]
        if match.group() not in seen:
            cuts += [len(text) + i for i, char in enumerate(maths) if char == "\n"]
        seen.add(match.group())
        text, last = text + maths, match.end()
    return text + hidden[last:], cuts


def merge_short(parts: list[str], is_short, last_joins_previous: bool = True) -> list[str]:
    """Each short part absorbs the next one (until it is no longer short); a short last part joins the
    one before it, or with `last_joins_previous` False stays (the loops at lines 94-104, 143-153 and
    207-218). A lone short part stays: there the reference is left with no boundary and raises."""
    i = 0
    while i < len(parts):
        if not is_short(parts[i]):
            i += 1
        elif i < len(parts) - 1:
            parts[i] += parts.pop(i + 1)
        elif i > 0 and last_joins_previous:
            parts[i - 1] += parts.pop(i)
        else:
            break
    return parts


def best_cut(text: str, cuts: list, min_length: int, spans: dict[str, str] | None = None) -> int | None:
    """Offset of the most central cut of the first kind in `cuts` that leaves both halves `min_length`
    characters, or None (lines 241-275 and 314-345). With `spans`, `text` is hidden text: centrality is
    measured on it, the halves' lengths and the returned offset with the maths shown."""
    for pattern, length in cuts:
        positions = [m.start() + length for m in pattern.finditer(text)]
        if not positions:
            continue
        cut = min(positions, key=lambda p: abs(2 * p - len(text)))  # the first of equally central ones
        head, tail = text[:cut], text[cut:]
        if spans is not None:
            head, tail = show_maths(head, spans)[0], show_maths(tail, spans)[0]
        if min(len(head), len(tail)) >= min_length:
            return len(head)
    return None


def break_long_part(part: str) -> list[str]:
    """A part over 100 characters cut again and again (`break_part_as_much_as_possible`, lines 360-401):
    each piece still over 100 characters is cut in two at a word boundary, else in maths, until no
    piece is longer or none can be cut. After a cut in maths the reference stops trying word cuts
    for pieces starting in a range it records relative to the piece cut, yet compares with offsets
    in the whole part (lines 365-373, 391); reproduced as is."""
    cuts, maths_from, maths_to, i = [0, len(part)], -1, 0, 0
    while i < len(cuts) - 1:
        piece, cut = part[cuts[i] : cuts[i + 1]], None
        if len(piece) > MAX_PART_LENGTH:
            if not maths_from <= cuts[i] < maths_to:
                hidden, spans = hide_maths(piece)  # hidden afresh: a piece may hold half a maths span
                cut = best_cut(hidden, WORD_CUTS, 40, spans)
            if cut is None and (cut := best_cut(piece, MATHS_CUTS, 20)) is not None:
                maths_from = cut if maths_from == -1 else min(maths_from, cut)
                maths_to = max(maths_to, len(piece))
        if cut is None:
            i += 1
        else:
            cuts.insert(i + 1, cuts[i] + cut)
    return [part[a:b] for a, b in zip(cuts, cuts[1:])]


def split_math(text: str) -> list[str]:
    r"""Steps of a MATH-style solution, in the reference's four passes (`split_solution_inplace`):

    1. with the maths hidden, cut at line breaks (each starts the part after it) and at sentence
       ends; a part under 20 characters (a hidden span counting 60) that does not end with "."
       absorbs the next part (lines 76-114);
    2. cut after maths that ends a sentence (".$", ".$$", ".\)", ".\]"); then any part under 20
       characters (maths shown) not ending so absorbs the next one, a last one joins the one
       before: a plain "." does not protect here (lines 117-162);
    3. show the maths, cutting at the line breaks inside it (so a multi-line \begin{align}..\end{align},
       $$..$$ or \[..\] IS cut at its line breaks); a part under 3 characters or that only opens maths
       ("$$", "\[", "\begin{align*}") absorbs the next one (lines 165-220);
    4. cut parts over 100 characters again (`break_long_part`).
    The reference raises, and drops the sample, when nothing is left to cut (a text under 20
    characters that does not end with maths ending a sentence) and when a maths span holds another
    one (say \(..\) inside $..$): here the first gives one step, the second the cuts of the rules
    above with the spans nested; an empty text gives one empty step (the reference: none).
    """
    hidden, spans = hide_maths(text)
    lines = []
    for sentence in SENTENCE_END.split(hidden):
        first, *rest = sentence.split("\n")
        lines += [first] + ["\n" + line for line in rest]
    lines = merge_short(lines, lambda p: len(p) < 20 and not p.endswith("."), last_joins_previous=False)
    parts = []
    for line in lines:
        start = 0
        for match in TOKEN.finditer(line):
            if spans.get(match.group(), "").endswith(MATHS_SENTENCE_END):
                parts.append(line[start : match.end()])
                start = match.end()
        parts.append(line[start:])

    def short_in_full(part: str) -> bool:
        shown = show_maths(part, spans)[0]
        return len(shown) < 20 and not shown.endswith(MATHS_SENTENCE_END)

    parts = merge_short(parts, short_in_full)
    pieces = []
    for part in parts:
        shown, cuts = show_maths(part, spans)
        pieces += [shown[a:b] for a, b in zip([0] + cuts, cuts + [len(shown)])]
    pieces = merge_short(pieces, lambda p: len(p) < 3 or OPENING.fullmatch(p.strip()) is not None)
    return [step for piece in pieces for step in (break_long_part(piece) if len(piece) > MAX_PART_LENGTH else [piece])]


# ------------------------------------------------------------------------------- steps and tokens


def step_token_ends(steps: list[str], tokenizer, token_ids: list[int]) -> list[int]:
    """End (exclusive token index) of each step in `token_ids`, the last one `len(token_ids)`.

    `steps` must cut `tokenizer.decode(token_ids, skip_special_tokens=True)`. The reference gives each
    response token the advantage of the character its offset starts at (`_compute_token_advantages`,
    `math_episode_generator_with_mc_advantages.py:364-369`): so a token that straddles a boundary belongs
    to the step holding its first character, and a step whose characters all lie in such a token has no
    token (its end repeats). The EOS (it decodes to nothing) is always in the last step here. The reference
    gives it the advantage of the token before it (lines 371-372), which is the last step's unless that
    step owns no token (a completion ending in a blank line: "3\n\n" is one token); there the reference's
    last advantage, R - V(s_m-1), reaches no token, and here it reaches the EOS. On purpose: the steps'
    ends are where the Monte-Carlo rollouts start, and the step before cannot end after the EOS
    (docs/parity.md, row 8).
    A token starts where the decoded text of the tokens before it ends; the ends are found by
    bisection, about log2(len) decodes per boundary (a multi-byte character split across tokens
    decodes as replacement characters until complete, which may move an end there by a token). (The
    reference re-tokenises the text and rolls the Monte-Carlo completions out from a text prefix, which
    may end inside a token; from these ends the rollouts start after whole tokens.)
    """
    starts: dict[int, int] = {}

    def start(i: int) -> int:  # where token i starts in the decoded text
        if i not in starts:
            starts[i] = len(tokenizer.decode(token_ids[:i], skip_special_tokens=True))
        return starts[i]

    if start(len(token_ids)) != sum(map(len, steps)):
        raise ValueError("steps must cut the decoded text of token_ids (skip_special_tokens=True)")
    ends, boundary = [], 0
    for step in steps[:-1]:
        boundary += len(step)
        ends.append(bisect_left(range(len(token_ids)), boundary, key=start))
    return ends + [len(token_ids)]


def value_state_count(n_steps: int, max_step: int | None = None) -> int:
    """How many states of an `n_steps`-step completion get a Monte-Carlo value: s_0 (the prompt alone)
    and s_k (the prompt and the first k steps) for 1 <= k <= min(n_steps - 1, max_step); the finished
    state needs none (`_create_value_estimation_requests`, lines 692-701: value_idx = step_idx + 1 for
    step_idx <= min(n_steps - 2, max_step - 1))."""
    return 1 + min(n_steps - 1, n_steps if max_step is None else max_step)


def backfill_values(estimates: list[float], reward: float, n_steps: int) -> list[float]:
    """V(s_0) ... V(s_n) from the estimates of the first `value_state_count` states. The reference sets
    V(finished) = 0, puts the reward on the last step and fills the unestimated states from the end
    with reward + next value (`_compute_step_advantages`, lines 381-390), so every unestimated state is
    worth the reward. Folding the reward into V(s_n) gives the same step advantages V(s_k+1) - V(s_k):
    on GSM8K (max_step 25) step 26 gets reward - V(s_25), every later step 0."""
    return list(estimates) + [reward] * (n_steps + 1 - len(estimates))
