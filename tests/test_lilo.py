"""lilo_ppo.py and lilo_vineppo.py: learnability selection by hand; both scripts end to end."""

import collections

import numpy as np
import pytest
import torch

import lilo_ppo
import lilo_vineppo
from conftest import TINY_FLAGS, assert_logged, read_scalars, run_script, train


@pytest.fixture(params=[lilo_ppo, lilo_vineppo], ids=["lilo_ppo", "lilo_vineppo"])
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


TINY = [*TINY_FLAGS, "--eval-interval", "0"]
VINE = ["--mc-rollouts", "2", "--min-step-tokens", "1"]


@pytest.mark.parametrize("script", ["lilo_ppo.py", "lilo_vineppo.py"])
def test_end_to_end_trains_on_the_selected_completions(script, tiny_model, tmp_path):
    extra = VINE if "vine" in script else []
    run_dir, _ = train(script, tiny_model, tmp_path, "--num-iterations", "2", "--oversample", "3", *TINY, *extra)
    scalars = read_scalars(run_dir)
    # a pool of 3 x 2 questions, 2 completions each, generated once; the 2 kept questions' completions trained on
    assert [v for _, v in scalars["charts/completions_generated"]] == [12, 12]
    assert [v for _, v in scalars["charts/completions_trained"]] == [4, 4]
    assert_logged(scalars, ["charts/pool_all_correct_share", "charts/pool_all_wrong_share", "charts/pool_learnability",
                            "charts/batch_learnability", "charts/all_wrong_share", "losses/policy_loss"], [1, 2])
    assert all(b >= p for (_, b), (_, p) in zip(scalars["charts/batch_learnability"], scalars["charts/pool_learnability"]))
    assert (run_dir / "checkpoint" / "policy" / "model.safetensors").exists()


@pytest.mark.parametrize("script", ["lilo_ppo.py", "lilo_vineppo.py"])
def test_buffered_variant_refills_mixes_and_resumes(script, tiny_model, tmp_path):
    extra = VINE if "vine" in script else []
    buffered = ["--buffered", "--buffer-interval", "3", "--buffer-candidates", "4", "--buffer-completions", "2",
                "--buffer-size", "2", "--buffer-share", "0.5", *TINY, *extra]
    run_dir, _ = train(script, tiny_model, tmp_path, "--num-iterations", "2", *buffered)
    buffer = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)["buffer"]
    assert len(buffer) == 2
    result = run_script(script, "--model", tiny_model, "--resume", str(run_dir), "--num-iterations", "4", *buffered)
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = read_scalars(run_dir)
    # refills (4 candidates x 2 completions) at iterations 1 and 4, every T = 3; plus 2 questions x 2 completions each time
    assert [v for _, v in scalars["charts/completions_generated"]] == [12, 4, 4, 12]
    # rho = 0.5 of the 2 questions come from the buffer, also at iteration 3, right after resuming: the buffer was restored
    assert [v for _, v in scalars["charts/questions_from_buffer"]] == [1, 1, 1, 1]
