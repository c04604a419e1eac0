"""The LILO files: learnability selection by hand, in each of them (the screened variants' tie-break too), and the
predicted variants' selection on predicted solve rates (end to end: tests/test_trainers.py; the predictor:
tests/test_predictor.py)."""

import collections

import numpy as np
import pytest
import torch

import lilo_grpo
import lilo_grpo_predicted
import lilo_grpo_screened
import lilo_ppo
import lilo_ppo_buffered
import lilo_ppo_predicted
import lilo_ppo_screened
import lilo_vineppo
import lilo_vineppo_predicted
import lilo_vineppo_screened

SCREENED = [lilo_ppo_screened, lilo_vineppo_screened, lilo_grpo_screened]


@pytest.fixture(params=[lilo_ppo, lilo_vineppo, lilo_grpo, lilo_ppo_buffered, *SCREENED], ids=lambda m: m.__name__)
def select_learnable(request):
    return request.param.select_learnable


def scores_with_success_rates(*rates, n=4):
    return torch.tensor([[float(i < round(r * n)) for i in range(n)] for r in rates])


def test_keeps_the_highest_learnability(select_learnable):
    scores = scores_with_success_rates(0.0, 1.0, 0.5, 0.25, 0.75)
    assert select_learnable(scores, 1) == [2]
    assert sorted(select_learnable(scores, 3)) == [2, 3, 4]


def test_never_or_always_solved_lose_to_any_other(select_learnable):
    scores = scores_with_success_rates(0.0, 1.0, 0.25, 1.0, 0.0, n=8)
    for _ in range(20):
        assert select_learnable(scores, 1) == [2]


def test_ties_are_broken_at_random(select_learnable):
    np.random.seed(0)
    scores = scores_with_success_rates(0.5, 0.5, 0.5, 0.0)
    counts = collections.Counter(select_learnable(scores, 1)[0] for _ in range(300))
    assert set(counts) == {0, 1, 2}
    assert min(counts.values()) > 60  # about 100 each


def test_oversample_one_keeps_the_whole_pool(select_learnable):
    # with a pool the size of the batch, every question (and completion) is trained on, as in the base trainer
    scores = scores_with_success_rates(0.0, 1.0, 0.5, 0.25)
    assert sorted(select_learnable(scores, 4)) == [0, 1, 2, 3]


@pytest.mark.parametrize("module", SCREENED, ids=lambda m: m.__name__)
def test_screening_breaks_ties_toward_the_pools_rarer_outcome(module):
    """One screening completion each: every p(1 - p) is 0, and the sign of a learnable question is the outcome the
    pool rarely shows: a right answer where most are wrong (questions 1 and 3), a wrong one where most are right."""
    mostly_wrong = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [0.0]])
    for _ in range(20):
        assert sorted(module.select_learnable(mostly_wrong, 2)) == [1, 3]
        assert module.select_learnable(1 - mostly_wrong, 1)[0] in (1, 3)  # mostly right: a wrong answer
        assert module.select_learnable(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]), 1) == [1]  # mixed first


@pytest.fixture(params=[lilo_ppo_predicted, lilo_vineppo_predicted, lilo_grpo_predicted], ids=lambda m: m.__name__)
def select_predicted(request):
    return request.param.select_predicted


def test_predicted_selection_takes_the_most_learnable_by_prediction(select_predicted):
    predicted = torch.tensor([0.0, 0.9, 0.5, 0.3, 1.0, 0.6], dtype=torch.float64)  # p(1-p): 0, .09, .25, .21, 0, .24
    for _ in range(20):
        assert select_predicted(predicted, 3, explore=0.0) == [2, 5, 3]


def test_predicted_selection_explores_a_share_at_random(select_predicted):
    """With explore 0.5, two of four are the most learnable by prediction, the other two drawn from the rest: in
    300 draws every other candidate is drawn, about equally often."""
    np.random.seed(0)
    predicted = torch.tensor([0.5, 0.45, 0.0, 0.0, 1.0, 1.0, 0.0, 0.1], dtype=torch.float64)
    counts = collections.Counter()
    for _ in range(300):
        keep = select_predicted(predicted, 4, explore=0.5)
        assert keep[:2] == [0, 1] and len(set(keep)) == 4
        counts.update(keep[2:])
    assert set(counts) == {2, 3, 4, 5, 6, 7} and min(counts.values()) > 60  # 100 each on average


def test_without_a_prediction_the_choice_is_random(select_predicted):
    """Until the predictor knows two questions (NaN predictions), the questions are drawn uniformly: the base."""
    np.random.seed(0)
    counts = collections.Counter()
    for _ in range(400):
        keep = select_predicted(torch.full((8,), float("nan"), dtype=torch.float64), 2, explore=0.25)
        assert len(set(keep)) == 2
        counts.update(keep)
    assert set(counts) == set(range(8)) and min(counts.values()) > 60  # 100 each on average
