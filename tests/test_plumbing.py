"""What every trainer shares and is not the algorithm (common/): the learning-rate schedule, the argument checks, the
data order, the reward of a cut-off completion, the stdout line and the phases printed. Each is tested once, here; the
trainers' use of them end to end in tests/test_trainers.py."""

import math

import numpy as np
import pytest

import ppo
from common.args import check_args
from common.console import phase, print0
from common.data import draw_questions
from common.grading import score
from common.schedule import lr_scale
from common.tracking import log_iteration
from common.vllm_utils import Completion


def test_lr_schedule_at_the_papers_length():
    """16000 steps, 3% warm-up (480 steps): DeepSpeed's log-shaped warm-up, its first step at the peak and its
    second at 0, then linear decay to 0 (DeepSpeed's WarmupDecayLR, stepped after each optimiser step)."""
    scale = [lr_scale(step, 16000, 0.03, True) for step in (0, 1, 241, 480, 481, 8000, 15999)]
    expected = [1.0, 0.0, math.log(241) / math.log(480), 1.0, 1.0, 8001 / 15520, 2 / 15520]
    assert scale == pytest.approx(expected, rel=1e-9)
    assert lr_scale(8000, 16000, 0.03, decay=False) == 1.0
    assert lr_scale(1, 100, 0.0, True) == 1.0 and lr_scale(51, 100, 0.0, True) == 0.5  # no warm-up


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"questions_per_iteration": 3, "completions_per_question": 3, "minibatch_size": 4, "micro_batch_size": 4},
         "multiple of --minibatch-size"),
        ({"learning_rate": -1.0}, "--learning-rate must be positive"),
        ({"resume": "/nonexistent-run"}, "no checkpoint/state.pt in that folder"),
        ({"prompt_format": "sft"}, "--prompt-format must be chat or vineppo"),
        ({"warmup_ratio": 1.0}, r"--warmup-ratio must be in \[0, 1\)"),
        ({"precision": "fp16"}, "--precision bf16 or fp32"),
    ],
)  # fmt: skip
def test_check_args_rejects_nonsense(fields, message):
    with pytest.raises(SystemExit, match=message):
        check_args(ppo.Args(**fields))


def test_check_args_passes_the_defaults_and_adds_the_trainers_own_checks():
    check_args(ppo.Args())
    with pytest.raises(SystemExit, match="^error: --mine$"):
        check_args(ppo.Args(), (False, "--not-this"), (True, "--mine"))


def test_draw_questions_covers_the_dataset_once_per_pass():
    np.random.seed(0)
    run_state, seen = {"data_order": np.random.permutation(10), "data_position": 0}, []
    for _ in range(5):
        drawn = draw_questions(4, run_state)
        assert len(drawn) == 4
        seen += drawn
    assert sorted(seen[:10]) == list(range(10))  # the first pass: every question once
    assert sorted(seen[10:20]) == list(range(10))  # the second pass, reshuffled
    assert seen[:10] != seen[10:20]


def test_a_completion_cut_off_at_max_new_tokens_scores_0():
    """As in the papers' code (penalize_unfinished_response, penalty 0): an unfinished answer is not an answer."""
    completions = [
        [Completion([1], "\\boxed{1}", False), Completion([1], "\\boxed{1}", True), Completion([1], "", False)]
    ]
    scores, unparseable = score([{"answer": "1"}], completions)
    assert scores == [[1.0, 0.0, 0.0]] and unparseable == [[0.0, 0.0, 1.0]]


def test_one_line_per_iteration_with_what_the_trainer_logged(capsys):
    """The trainer's scalars that the line shows, in its order, then the time left if the 17 iterations left take
    as long as this one (60 s)."""
    metrics = {"charts/train_accuracy": 0.25, "charts/all_correct_share": 0.0, "charts/all_wrong_share": 0.5,
               "losses/value_loss": 0.01234, "charts/tokens_per_second": 61.2, "time/generation": 3.2,
               "time/update": 10.0, "time/sync": 0.31, "time/iteration": 60.0}  # fmt: skip
    log_iteration(None, 3, 20, metrics)
    line = capsys.readouterr().out
    expected = "iter 3/20 train_acc=0.250 all_right=0.00 all_wrong=0.50 v_loss=0.0123 time gen/update/sync=3/10/0.3s"
    assert line.startswith(expected + " tok/s=61 mem=") and line.endswith("GiB left~17min\n")


def test_off_a_terminal_only_the_announced_phases_are_printed(capsys):
    """In a log file (stdout not a terminal) the phases of every iteration would be noise: only those announced (the
    engine's start, an evaluation) get a line; print0 prints on rank 0 (the only rank here)."""
    phase("generating")
    phase("evaluating at iteration 0", announce=True)
    print0("iter 0 test_accuracy=0.240")
    assert capsys.readouterr().out == "evaluating at iteration 0 ...\niter 0 test_accuracy=0.240\n"
