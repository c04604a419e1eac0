"""The LILO files: learnability selection by hand, in each of them (end to end: tests/test_trainers.py)."""

import collections

import numpy as np
import pytest
import torch

import lilo_grpo
import lilo_ppo
import lilo_ppo_buffered
import lilo_vineppo


@pytest.fixture(params=[lilo_ppo, lilo_vineppo, lilo_grpo, lilo_ppo_buffered], ids=lambda m: m.__name__)
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
