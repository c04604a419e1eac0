r"""Datasets and prompts. Every example is `{"question": str, "answer": str}`, the answer being
the reference *final* answer (extracted once, at load time), as `grading.grade` expects.

`--dataset` takes:
- `arithmetic`: built in, generated from a seed, no download: "What is 4 + 8 * 3?"; its test split shares no
  question with its training split and repeats none. Difficulty is the number of
  digits of each operand and the number of operations; the default is one-digit operands, two operations, which the
  two demonstrations solve one operation per line, so that completions have several steps for VinePPO to value
  (docs/datasets.md has the default model's measured solve rates and steps per completion).
- `gsm8k`: `openai/gsm8k` (config `main`) through Hugging Face `datasets`.
- `math`: Hendrycks MATH as the VinePPO and LILO papers split it (Lightman et al.'s split):
  train on the 12k problems of MATH's train and test sets that are not in MATH-500, test
  on MATH-500.
- `orz57k`: Open-Reasoner-Zero's 57k maths questions (the LILO paper's GRPO dataset), from the hub
  copy open-instruct made of the file (`ai2-adapt-dev/rlvr_open_reasoner_math`: `messages`,
  `ground_truth`); test on MATH-500. The original file, `data/orz_math_57k_collected.json` in
  `Open-Reasoner-Zero/Open-Reasoner-Zero` (a list of [{"from": "human", "value": question},
  {"from": "assistant", "ground_truth": {"value": answer}}] pairs), loads as a local file.
- a local `.jsonl`, `.json`, `.parquet` or `.csv` file with `question`/`answer` columns (or the
  hub schemas above: GSM8K's `answer` with `#### N`, MATH's `problem`/`solution`, ORZ's pairs,
  `messages` + `ground_truth`). Its test split is the sibling file with `train` replaced by `test`
  in the name, if there is one.
"""

import random
import sys
from pathlib import Path

import numpy as np

from common.console import print0
from common.grading import extract_answer

INSTRUCTION = "Put your final answer within \\boxed{}."
HUB = {  # name -> split -> list of (path, config, split) whose rows are concatenated
    "gsm8k": {"train": [("openai/gsm8k", "main", "train")], "test": [("openai/gsm8k", "main", "test")]},
    "math": {
        "train": [
            ("EleutherAI/hendrycks_math", s, split)
            for split in ("train", "test")
            for s in (
                "algebra",
                "counting_and_probability",
                "geometry",
                "intermediate_algebra",
                "number_theory",
                "prealgebra",
                "precalculus",
            )
        ],
        "test": [("HuggingFaceH4/MATH-500", None, "test")],
    },
    # Open-Reasoner-Zero's 57k maths collection (orz_math_57k_collected.json in Open-Reasoner-Zero/Open-Reasoner-Zero,
    # `data/`), as open-instruct converted it (scripts/data/rlvr/open_reasoner.py); no test split: MATH-500, one of
    # the benchmarks Open-Reasoner-Zero reports
    "orz57k": {
        "train": [("ai2-adapt-dev/rlvr_open_reasoner_math", None, "train")],
        "test": [("HuggingFaceH4/MATH-500", None, "test")],
    },
}
# Two demonstrations for the built-in dataset, written one operation per line, so that a 135M model answers in a
# gradable form from the first iteration and in several steps: a line is a reasoning step to VinePPO (gsm8k split).
FEWSHOT = {
    "arithmetic": [
        ("What is 3 + 4 * 2?", "First, 4 * 2 = 8.\nThen, 3 + 8 = 11.\nThe answer is \\boxed{11}."),
        ("What is 6 * 3 - 5?", "First, 6 * 3 = 18.\nThen, 18 - 5 = 13.\nThe answer is \\boxed{13}."),
    ]
}
# The default difficulty levels (digits per operand, operations), drawn uniformly; chosen from measured solve rates
# (docs/datasets.md): its pool holds always-, sometimes- and never-solved questions, in 3 steps.
ARITHMETIC_LEVELS = ((1, 2),)


def make_arithmetic(n: int, seed: int, levels=ARITHMETIC_LEVELS) -> list[dict]:
    """`n` questions like "What is 4 + 8 * 3?", each of a level (digits per operand, operations) drawn uniformly
    from `levels`; same seed, same list."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        digits, ops = rng.choice(levels)
        terms = [str(rng.randint(10 ** (digits - 1), 10**digits - 1))]
        for _ in range(ops):
            terms += [rng.choice("+-*"), str(rng.randint(10 ** (digits - 1), 10**digits - 1))]
        expression = " ".join(terms)
        examples.append(
            {
                "question": f"What is {expression}?",
                "answer": str(eval(expression)),  # only digits and + - * from above
                "level": f"d{digits}o{ops}",
            }
        )
    return examples


def to_example(row: dict, where: str, answer_required: bool = True) -> dict | None:
    """A row in any supported schema -> `{"question", "answer"}`, or a clear error (None for a row without a final
    answer when `answer_required` is off)."""
    if isinstance(row.get("0"), dict) and isinstance(row.get("1"), dict):  # ORZ's pairs, read by `datasets` as 0, 1
        truth = row["1"].get("ground_truth")
        row = {"question": row["0"].get("value"), "answer": truth.get("value") if isinstance(truth, dict) else None}
    elif isinstance(row.get("messages"), list) and "ground_truth" in row:  # open-instruct's RLVR conversions
        user = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        row = {"question": user[0] if user else None, "answer": row["ground_truth"]}
    question = row.get("question", row.get("problem"))
    if not isinstance(question, str) or not question.strip():
        raise SystemExit(f"error: {where}: no 'question' (or 'problem') text; columns: {sorted(row)}")
    answer = row.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, str) and "####" in answer:  # GSM8K: worked solution then "#### 42"
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not isinstance(answer, str) or not answer.strip():
        solution = row.get("solution")
        answer = extract_answer(solution) if isinstance(solution, str) else None  # MATH: last \boxed{}
    if not answer or not answer.strip():
        if not answer_required:
            return None
        raise SystemExit(
            f"error: {where}: no final answer ('answer', or a \\boxed{{}} in 'solution'); columns: {sorted(row)}"
        )
    return {"question": question.strip(), "answer": answer.strip()}


def _load_rows(path: str, config: str | None, split: str) -> list[dict]:
    """Rows from the dataset hub, or from a local file, through Hugging Face `datasets`."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if Path(path).is_file():
            suffix = Path(path).suffix.lstrip(".")
            kind = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(suffix)
            if kind is None:
                raise SystemExit(
                    f"error: --dataset {path}: unsupported file type (use .jsonl, .json, .parquet or .csv)"
                )
            return list(datasets.load_dataset(kind, data_files=path, split="train"))
        return list(datasets.load_dataset(path, config, split=split))
    except SystemExit:
        raise
    except Exception as e:  # offline hub, unreadable file, bad JSON line, ...
        hint = (
            ""
            if Path(path).is_file()
            else (
                "\nhint: no network or no dataset hub? pass a local file instead: --dataset path/to/train.jsonl"
                " (.jsonl, .json, .parquet or .csv with question/answer columns)"
            )
        )
        raise SystemExit(
            f"error: could not load {path} ({config or 'default'}, {split}): {type(e).__name__}: {e}".strip()[:2000]
            + hint
        ) from None


def load_split(dataset: str, split: str, seed: int = 0) -> list[dict]:
    """The `train` or `test` split of `--dataset` as a list of examples."""
    if dataset == "arithmetic":  # train and test from disjoint seeds
        train = make_arithmetic(5000, seed=seed * 2)
        if split == "train":
            return train
        # the default level has only 6,561 distinct questions, so independent draws overlap (about half of a test
        # split drawn alone is in its training split): the test split is the first 500 distinct questions of the
        # test seed's stream that training never sees
        seen, test = {e["question"] for e in train}, []
        for example in make_arithmetic(20000, seed=seed * 2 + 1):
            if example["question"] not in seen and len(test) < 500:
                seen.add(example["question"])
                test.append(example)
        return test
    if dataset in HUB:
        rows = [
            (row, f"{p}{f'/{config}' if config else ''}/{s}[{i}]")
            for p, config, s in HUB[dataset][split]
            for i, row in enumerate(_load_rows(p, config, s))
        ]
    elif Path(dataset).is_file():
        path = Path(dataset)
        if split == "test":
            sibling = path.with_name(path.name.replace("train", "test"))
            path = sibling if "train" in path.name and sibling.is_file() else path
        rows = [(row, f"{path}:{i + 1}") for i, row in enumerate(_load_rows(str(path), None, "train"))]
    else:
        names = ", ".join(["arithmetic", *HUB])
        raise SystemExit(f"error: --dataset {dataset}: not one of {names}, nor an existing file")
    # a hub dataset's row without a final answer is left out with a warning (the user cannot mend it: hendrycks_math's
    # number_theory train[661] ends in an empty \boxed{}); in the user's own file it is an error, with its line
    examples = [to_example(row, where, answer_required=dataset not in HUB) for row, where in rows]
    if missing := [where for (_, where), e in zip(rows, examples) if e is None]:
        print0(f"warning: left out {len(missing)} row(s) without a final answer: {missing[:3]}", file=sys.stderr)
        examples = [e for e in examples if e is not None]
    if dataset == "math" and split == "train":  # MATH-500 is the test set: keep it out of training
        test_questions = {" ".join(e["question"].split()) for e in load_split("math", "test")}
        examples = [e for e in examples if " ".join(e["question"].split()) not in test_questions]
    if not examples:
        raise SystemExit(f"error: --dataset {dataset}: the {split} split is empty")
    return examples


# The papers' prompt (McGill-NLP/VinePPO, configs/prompt_library/MATH_step_by_step_sft.jsonnet), BOS first
# (`append_bos_to_query`, configs/episode_generators/math_episode_generator.jsonnet): the format the papers' SFT
# models (realtreetune/rho-1b-sft-GSM8K, -MATH, deepseekmath-7b-sft-*) were fine-tuned on, no few-shot examples.
# Their solutions follow on a new line and end with "#### N" (GSM8K) or a \boxed{} answer (MATH).
VINEPPO_TEMPLATE = "[MATH_TASK] Problem:\n{question}\n\nSolution:"


def build_prompt(tokenizer, question: str, dataset: str, prompt_format: str = "chat") -> list[int]:
    """Token ids of the prompt. chat: the tokenizer's chat template when it has one (else plain text), with the
    dataset's few-shot examples and an instruction to box the answer; vineppo: the papers' SFT format."""
    if prompt_format == "vineppo":
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        return bos + tokenizer(VINEPPO_TEMPLATE.format(question=question), add_special_tokens=False)["input_ids"]
    shots = FEWSHOT.get(dataset, [])
    if tokenizer.chat_template:
        messages = []
        for q, a in shots:
            messages += [{"role": "user", "content": f"{q} {INSTRUCTION}"}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": f"{question} {INSTRUCTION}"})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    text = "".join(f"Question: {q} {INSTRUCTION}\nAnswer: {a}\n\n" for q, a in shots)
    text += f"Question: {question} {INSTRUCTION}\nAnswer:"
    return tokenizer(text)["input_ids"]


def load_questions(args, tokenizer) -> tuple[list[dict], list[dict]]:
    """--dataset's training questions and its first --eval-size test questions, each with its tokenised prompt;
    questions whose prompt is longer than --max-prompt-tokens are left out."""
    train, test = load_split(args.dataset, "train", args.seed), load_split(args.dataset, "test", args.seed)
    for split in (train, test):
        for example in split:
            example["prompt"] = build_prompt(tokenizer, example["question"], args.dataset, args.prompt_format)
    train = [e for e in train if len(e["prompt"]) <= args.max_prompt_tokens]
    test = [e for e in test if len(e["prompt"]) <= args.max_prompt_tokens][: args.eval_size]
    if not train:
        raise SystemExit(f"error: no training question fits in --max-prompt-tokens {args.max_prompt_tokens}")
    print0(f"{args.dataset}: {len(train)} training questions, {len(test)} test questions")
    return train, test


def draw_questions(n: int, run_state: dict) -> list[int]:
    """The next `n` question indices in a random order of the dataset that is reshuffled after each pass (so no
    repeats within a pass). `run_state` holds the order and the position in it (which a checkpoint saves), and
    moves on."""
    drawn = []
    while len(drawn) < n:
        if run_state["data_position"] == len(run_state["data_order"]):
            run_state["data_order"], run_state["data_position"] = np.random.permutation(len(run_state["data_order"])), 0
        start = run_state["data_position"]
        taken = run_state["data_order"][start : start + n - len(drawn)].tolist()
        drawn, run_state["data_position"] = drawn + taken, start + len(taken)
    return drawn
