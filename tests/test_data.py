import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from common import data
from common.data import ARITHMETIC_LEVELS, FEWSHOT, INSTRUCTION, build_prompt, load_split, make_arithmetic, to_example
from common.steps import split_gsm8k

REPO = Path(__file__).resolve().parents[1]


def evaluate(expression: str) -> int:
    """Independent of `eval`: `*` binds tighter than `+`/`-`, all left-associative."""
    tokens = expression.split()
    total, sign, product = 0, 1, int(tokens[0])
    for op, number in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            product *= int(number)
        else:
            total, sign, product = total + sign * product, (1 if op == "+" else -1), int(number)
    return total + sign * product


def operands_and_ops(question: str) -> tuple[list[str], list[str]]:
    tokens = question.removeprefix("What is ").removesuffix("?").split()
    return tokens[0::2], tokens[1::2]


# ------------------------------------------------------------------------------- arithmetic


def test_arithmetic_is_deterministic_in_its_seed():
    assert make_arithmetic(50, seed=3) == make_arithmetic(50, seed=3)
    assert make_arithmetic(50, seed=3) != make_arithmetic(50, seed=4)


def test_arithmetic_answers_are_correct():
    for example in make_arithmetic(500, seed=0):
        expression = example["question"].removeprefix("What is ").removesuffix("?")
        assert example["answer"] == str(evaluate(expression)), example


def test_evaluate_helper_respects_precedence():  # the checker itself must be right
    assert evaluate("2 + 3 * 4") == 14 and evaluate("10 - 2 - 3") == 5 and evaluate("7 - 2 * 3 + 1") == 2


def test_arithmetic_default_mix_is_the_measured_one():
    assert {e["level"] for e in make_arithmetic(200, seed=1)} == {f"d{d}o{o}" for d, o in ARITHMETIC_LEVELS}


def test_arithmetic_level_matches_operands_and_op_count():
    levels = [(d, o) for d in (1, 2, 3) for o in (1, 2)]
    examples = make_arithmetic(1000, seed=1, levels=levels)
    assert {e["level"] for e in examples} == {f"d{d}o{o}" for d, o in levels}
    for e in examples:
        operands, ops = operands_and_ops(e["question"])
        assert e["level"] == f"d{len(operands[0])}o{len(ops)}"
        assert {len(x) for x in operands} == {len(operands[0])} and set(ops) <= set("+-*")


@pytest.mark.parametrize("levels", [[(1, 1)], [(2, 1), (1, 3)], [(4, 2), (1, 1), (1, 1)]])
def test_arithmetic_levels_bound_digits_and_ops(levels):
    examples = make_arithmetic(400, seed=2, levels=levels)
    shapes = {(len(operands_and_ops(e["question"])[0][0]), len(operands_and_ops(e["question"])[1])) for e in examples}
    assert shapes == set(levels)


def test_arithmetic_levels_are_drawn_in_proportion_to_their_repeats():
    examples = make_arithmetic(3000, seed=4, levels=[(1, 1), (1, 2), (1, 2)])
    share = np.mean([e["level"] == "d1o2" for e in examples])
    assert abs(share - 2 / 3) < 0.03, share


def test_arithmetic_demonstrations_write_one_operation_per_line_and_are_right():
    """The demonstrations teach the step format VinePPO values: one line per operation, then the boxed answer."""
    for question, answer in FEWSHOT["arithmetic"]:
        expression = question.removeprefix("What is ").removesuffix("?")
        lines = answer.split("\n")
        assert len(lines) == len(operands_and_ops(question)[1]) + 1 and len(split_gsm8k(answer)) == len(lines)
        assert lines[-1] == f"The answer is \\boxed{{{evaluate(expression)}}}."
        for line in lines[:-1]:  # each line one operation, computed right
            left, right = line.split(", ", 1)[1].removesuffix(".").split(" = ")
            assert len(operands_and_ops(f"What is {left}?")[1]) == 1 and evaluate(left) == int(right)


def test_arithmetic_train_and_test_splits_use_disjoint_seeds():
    splits = {
        (seed, split): load_split("arithmetic", split, seed=seed) for seed in (0, 1) for split in ("train", "test")
    }
    assert len(splits[0, "train"]) == 5000 and len(splits[0, "test"]) == 500
    firsts = [tuple(e["question"] for e in examples[:100]) for examples in splits.values()]
    assert len(set(firsts)) == len(firsts)  # no split of any seed repeats another's sequence
    assert load_split("arithmetic", "test", seed=1) == splits[1, "test"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_arithmetic_test_split_is_held_out_and_distinct(seed):
    """No test question is a training question, none repeats; and the split is the test seed's stream with those
    left out, so that runs evaluated on the earlier, overlapping split can be re-scored on the questions it kept."""
    train, test = (load_split("arithmetic", split, seed=seed) for split in ("train", "test"))
    questions = [e["question"] for e in test]
    assert len(questions) == len(set(questions)) == 500
    assert not set(questions) & {e["question"] for e in train}
    stream = [e["question"] for e in make_arithmetic(20000, seed=seed * 2 + 1)]
    positions = [stream.index(q) for q in questions]
    assert positions == sorted(positions)


# ------------------------------------------------------------------------------- to_example

GSM8K_ROW = {"question": " Natalia sold clips. How many? ", "answer": "She sold 1,000 + 234 = 1,234.\n#### 1,234"}
MATH_ROW = {
    "problem": "Compute $x$.",
    "solution": r"So $x = \boxed{\frac{\sqrt{3}}{2}}$.",
    "level": "Level 2",
    "type": "Algebra",
}
MATH500_ROW = {
    "problem": "Find $y$.",
    "solution": r"Thus $\boxed{\frac12}$.",
    "answer": r"\frac{1}{2}",
    "subject": "Algebra",
    "level": 2,
    "unique_id": "test/algebra/1.json",
}


@pytest.mark.parametrize("row,expected", [
    (GSM8K_ROW, {"question": "Natalia sold clips. How many?", "answer": "1234"}),
    (MATH_ROW, {"question": "Compute $x$.", "answer": r"\frac{\sqrt{3}}{2}"}),
    (MATH500_ROW, {"question": "Find $y$.", "answer": r"\frac{1}{2}"}),  # `answer` wins over `solution`
    ({"question": "What is 2 + 2?", "answer": " 4 "}, {"question": "What is 2 + 2?", "answer": "4"}),
    ({"question": "What is 2 + 2?", "answer": 4}, {"question": "What is 2 + 2?", "answer": "4"}),
    ({"question": "What is 1 / 2?", "answer": 0.5}, {"question": "What is 1 / 2?", "answer": "0.5"}),
])  # fmt: skip
def test_to_example_reads_each_schema(row, expected):
    assert to_example(row, "here") == expected


@pytest.mark.parametrize("row,missing", [
    ({"answer": "4"}, "question"),
    ({"question": "  ", "answer": "4"}, "question"),
    ({"question": "What?"}, "answer"),
    ({"question": "What?", "answer": ""}, "answer"),
    ({"question": "What?", "answer": None, "solution": "no box here"}, "answer"),
    ({"question": "What?", "answer": True}, "answer"),
])  # fmt: skip
def test_to_example_malformed_rows_exit_naming_the_row(row, missing):
    with pytest.raises(SystemExit) as exc:
        to_example(row, "train.jsonl:7")
    message = str(exc.value)
    assert message.startswith("error: train.jsonl:7:") and missing in message


# ------------------------------------------------------------------------------- local files


def write(path: Path, rows: list[dict]) -> Path:
    """`rows` to `path` in the format its suffix names."""
    frame = pd.DataFrame(rows)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
@pytest.mark.parametrize(
    "row,answer", [(GSM8K_ROW, "1234"), (MATH_ROW, r"\frac{\sqrt{3}}{2}"), (MATH500_ROW, r"\frac{1}{2}")]
)
def test_load_split_reads_local_files_in_hub_schemas(tmp_path, suffix, row, answer):
    other = {**row, next(k for k in ("question", "problem") if k in row): "Another question?"}
    path = write(tmp_path / f"data{suffix}", [row, other])
    examples = load_split(str(path), "train")
    assert [e["answer"] for e in examples] == [answer, answer]
    assert examples[1]["question"] == "Another question?"
    assert load_split(str(path), "test") == examples  # no sibling file: the same file


def test_load_split_reads_numeric_answers_from_csv(tmp_path):
    path = write(
        tmp_path / "sums.csv",
        [{"question": "What is 2 + 2?", "answer": 4}, {"question": "What is 5 - 7?", "answer": -2}],
    )
    assert [e["answer"] for e in load_split(str(path), "train")] == ["4", "-2"]


def test_load_split_test_split_is_the_sibling_file(tmp_path):
    train = write(tmp_path / "gsm_train.jsonl", [{"question": "Train?", "answer": "1"}])
    write(tmp_path / "gsm_test.jsonl", [{"question": "Test?", "answer": "2"}])
    assert load_split(str(train), "train") == [{"question": "Train?", "answer": "1"}]
    assert load_split(str(train), "test") == [{"question": "Test?", "answer": "2"}]


def test_load_split_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [{"question": "Ok?", "answer": "1"}, {"question": "No answer?", "answer": ""}])
    with pytest.raises(SystemExit, match=rf"^error: {path}:2: no final answer"):
        load_split(str(path), "train")


@pytest.mark.parametrize("name,content,match", [
    ("data.txt", "question,answer\n", "unsupported file type"),
    ("broken.jsonl", '{"question": "a", "answer": "1"}\n{not json\n', "error: could not load"),
    ("empty.jsonl", "", "error: "),
])  # fmt: skip
def test_load_split_bad_local_files_exit_clearly(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SystemExit, match=match) as exc:
        load_split(str(path), "train")
    assert str(exc.value).startswith("error:") and "Traceback" not in str(exc.value)


@pytest.mark.parametrize("name", ["no_such_dataset", "missing/train.jsonl"])
def test_load_split_unknown_dataset_exits_clearly(name):
    with pytest.raises(
        SystemExit, match=r"^error: --dataset .*not one of arithmetic, gsm8k, math, orz57k, nor an existing file"
    ):
        load_split(name, "train")


# ------------------------------------------------------------------------------- the hub


def fake_math_hub(malformed_at: tuple[str, str, int] | None = None):
    """A `_load_rows` serving MATH (7 configs x train/test) and MATH-500 in their hub schemas.
    Two hendrycks problems are also in MATH-500, one of them twice (with other whitespace around and within)."""

    def load_rows(path, config, split):
        if path == "HuggingFaceH4/MATH-500":
            return [
                {**MATH500_ROW, "problem": f"Shared {k}?", "answer": str(k), "solution": rf"\boxed{{{k}}}"}
                for k in (1, 2)
            ]
        assert path == "EleutherAI/hendrycks_math" and split in ("train", "test"), (path, config, split)
        rows = [{**MATH_ROW, "problem": f"{config} {split} {i}?", "solution": rf"\boxed{{{i}}}"} for i in range(3)]
        if (config, split) == ("algebra", "test"):
            rows += [{**MATH_ROW, "problem": "Shared 1?"}, {**MATH_ROW, "problem": "  Shared 2?\n"}]
            rows += [{**MATH_ROW, "problem": "Shared\n 1?"}]  # the same question, but for its whitespace
        if malformed_at and (config, split) == malformed_at[:2]:
            rows[malformed_at[2]] = {"problem": "No solution?", "level": "Level 1"}
        return rows

    return load_rows


def test_math_train_excludes_math500_and_test_is_math500(monkeypatch):
    monkeypatch.setattr(data, "_load_rows", fake_math_hub())
    test = load_split("math", "test")
    assert test == [{"question": "Shared 1?", "answer": "1"}, {"question": "Shared 2?", "answer": "2"}]
    train = load_split("math", "train")
    questions = [e["question"] for e in train]
    assert len(train) == 7 * 2 * 3 and not {"Shared 1?", "Shared 2?"} & set(questions)
    assert "geometry test 2?" in questions and "algebra train 0?" in questions
    assert {e["answer"] for e in train} == {"0", "1", "2"}


def test_a_hub_row_without_an_answer_is_left_out_with_a_warning_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(data, "_load_rows", fake_math_hub(malformed_at=("geometry", "test", 1)))
    train = load_split("math", "train")
    assert len(train) == 7 * 2 * 3 - 1 and "No solution?" not in [e["question"] for e in train]
    warning = capsys.readouterr().err.strip()
    where = "EleutherAI/hendrycks_math/geometry/test[1]"
    assert warning == f"warning: left out 1 row(s) without a final answer: ['{where}']"


def test_offline_hub_exits_quickly_with_a_hint_and_no_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from common.data import load_split; load_split('gsm8k', 'train')"
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.startswith("error: could not load openai/gsm8k") and "Traceback" not in result.stderr
    assert "--dataset path/to/train.jsonl" in result.stderr


# ------------------------------------------------------------------------------- prompts


def generation_prompt(tokenizer) -> str:
    """What the chat template appends for `add_generation_prompt=True`."""
    messages = [{"role": "user", "content": "x"}]
    with_prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    without = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert with_prompt.startswith(without) and len(with_prompt) > len(without)
    return with_prompt[len(without) :]


def test_build_prompt_with_chat_template_has_question_instruction_and_fewshot(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer.chat_template
    question = "What is 17 + 25?"
    ids = build_prompt(tokenizer, question, "arithmetic")
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    text = tokenizer.decode(ids)
    assert len(FEWSHOT["arithmetic"]) == 2
    for shot_question, shot_answer in FEWSHOT["arithmetic"]:
        assert f"{shot_question} {INSTRUCTION}" in text and shot_answer in text
        assert f"{question} {INSTRUCTION}" in text and text.index(shot_answer) < text.index(question)
        hub_text = tokenizer.decode(build_prompt(tokenizer, question, "gsm8k"))  # no demonstration
        assert shot_question not in hub_text and f"{question} {INSTRUCTION}" in hub_text
    assert text.endswith(generation_prompt(tokenizer))


def test_build_prompt_without_chat_template_is_plain_text(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = None
    (q1, a1), (q2, a2) = FEWSHOT["arithmetic"]
    text = tokenizer.decode(build_prompt(tokenizer, "What is 17 + 25?", "arithmetic"), skip_special_tokens=True)
    assert text == (
        f"Question: {q1} {INSTRUCTION}\nAnswer: {a1}\n\nQuestion: {q2} {INSTRUCTION}\nAnswer: {a2}\n\n"
        f"Question: What is 17 + 25? {INSTRUCTION}\nAnswer:"
    )
    text = tokenizer.decode(build_prompt(tokenizer, "How many?", "gsm8k"), skip_special_tokens=True)
    assert text == f"Question: How many? {INSTRUCTION}\nAnswer:"


def test_vineppo_prompt_format_is_the_papers_sft_format(tiny_model):
    """BOS, then the reference's template (configs/prompt_library/MATH_step_by_step_sft.jsonnet), no few-shot
    example and no instruction: what realtreetune/rho-1b-sft-* were fine-tuned on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = build_prompt(tokenizer, "What is 17 + 25?", "arithmetic", "vineppo")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids[1:]) == "[MATH_TASK] Problem:\nWhat is 17 + 25?\n\nSolution:"


# Open-Reasoner-Zero's file (data/orz_math_57k_collected.json in Open-Reasoner-Zero/Open-Reasoner-Zero): a JSON list of
# [question, answer] pairs in this shape (its first entry, answer "\frac{1}{3}", shortened here)
ORZ_PAIRS = [
    [
        {"from": "human", "value": "Let $x$ be a third of one. What is $x$?"},
        {"from": "assistant", "ground_truth": {"value": "\\frac{1}{3}", "pass_at_n": 0.25}},
    ],
    [{"from": "human", "value": "What is 6 x 7?"}, {"from": "assistant", "ground_truth": {"value": "42"}}],
]


def test_orz_file_loads_as_a_local_file(tmp_path):
    path = tmp_path / "orz_math_57k_collected.json"
    path.write_text(json.dumps(ORZ_PAIRS))
    assert load_split(str(path), "train") == [
        {"question": "Let $x$ be a third of one. What is $x$?", "answer": "\\frac{1}{3}"},
        {"question": "What is 6 x 7?", "answer": "42"},
    ]


def test_orz_hub_copy_schema():
    """`ai2-adapt-dev/rlvr_open_reasoner_math` (`--dataset orz57k`): open-instruct's conversion of the same file."""
    row = {
        "messages": [{"role": "user", "content": "What is 6 x 7?"}, {"role": "assistant", "content": "42"}],
        "ground_truth": "42",
        "dataset": "math",
    }
    assert to_example(row, "here") == {"question": "What is 6 x 7?", "answer": "42"}
    with pytest.raises(SystemExit, match="^error: here: no 'question'"):
        to_example({**row, "messages": [{"role": "assistant", "content": "42"}]}, "here")
