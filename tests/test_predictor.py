"""common/predictor.py: the predicted-learnability trainers' representation of a question and their ridge predictor of
its solve rate, on crafted numbers and the tiny random model (the predictor on the real model:
benchmarks/predict_learnability.py)."""

import math
import sys

import numpy as np
import pytest
import torch

from common.predictor import predict_solve_rates, prediction_spearman, prompt_features
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from predict_learnability import screened_choice  # noqa: E402


def seen_from(features, rates, predicted=None):
    """The trainers' record of the questions generated for: (features, observed p, predicted p) each."""
    predicted = [float("nan")] * len(rates) if predicted is None else predicted
    return list(zip(torch.as_tensor(features, dtype=torch.float64), rates, predicted))


def test_no_prediction_before_two_questions_are_known():
    assert predict_solve_rates(torch.ones(3, 2), [], ridge=1.0).isnan().all()
    assert predict_solve_rates(torch.ones(3, 2), seen_from([[1.0, 2.0]], [0.5]), ridge=1.0).isnan().all()


def test_ridge_regression_by_hand():
    """One feature, questions at 0, 1, 2 solved 0, 1/2, 1 of the time: standardised (mean 1, unbiased std 1) the
    features are -1, 0, 1 and the centred rates half of them; the ridge weight is 1 / (2 + ridge), so a question at
    1.5 is predicted 0.5 + 0.5 / (2 + ridge): 0.75 without penalty, 0.625 with 2. Predictions stay in [0, 1]."""
    seen = seen_from([[0.0], [1.0], [2.0]], [0.0, 0.5, 1.0])
    candidates = torch.tensor([[1.5], [1.0], [10.0]], dtype=torch.float64)
    assert predict_solve_rates(candidates, seen, ridge=1e-9).tolist() == pytest.approx([0.75, 0.5, 1.0])
    assert predict_solve_rates(candidates, seen, ridge=2.0).tolist() == pytest.approx([0.625, 0.5, 1.0])


def test_features_without_spread_predict_the_mean():
    """Every question alike (the coin model's prompts end in the same state): the known mean, never NaN."""
    seen = seen_from(torch.ones(4, 3), [0.0, 0.5, 0.5, 1.0])
    assert predict_solve_rates(torch.ones(2, 3, dtype=torch.float64), seen, ridge=100.0).tolist() == [0.5, 0.5]


def test_the_predictor_ranks_questions_by_a_solve_rate_their_features_carry():
    """Solve rates that depend on 2 of 50 random features, seen on 150 questions: the predictions for 100 others
    follow the true rates (rank correlation over 0.8)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(250, 50))
    rates = 1 / (1 + np.exp(-(2 * features[:, 0] - features[:, 1])))
    predicted = predict_solve_rates(torch.tensor(features[150:]), seen_from(features[:150], rates[:150]), 10.0)
    seen = seen_from(features[150:], rates[150:].tolist(), predicted.tolist())
    assert prediction_spearman(seen) > 0.8


def test_spearman_over_the_questions_with_a_prediction():
    nan = float("nan")
    seen = seen_from(torch.zeros(5, 1), [0.0, 1.0, 0.25, 0.5, 0.75], [nan, nan, 0.1, 0.2, 0.3])
    assert prediction_spearman(seen) == pytest.approx(1.0)  # the first two, without a prediction, left out
    assert math.isnan(prediction_spearman(seen[:4]))  # two pairs: too few
    assert math.isnan(prediction_spearman(seen_from(torch.zeros(3, 1), [0.0, 0.0, 0.0], [0.1, 0.2, 0.3])))


def test_prompt_features_are_the_last_prompt_tokens_hidden_states_whatever_the_padding(tiny_model):
    """Each prompt's features are those of a forward pass over the prompt alone: its last token's hidden state in the
    last and the middle layer; a longer prompt beside it (left padding) changes nothing."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14]]
    together = prompt_features(model, prompts, pad_id=0, micro_batch_size=2)
    assert together.shape == (2, 2 * model.config.hidden_size) and together.dtype == torch.float64
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([prompts[0]]), output_hidden_states=True).hidden_states
    alone = torch.cat([hidden[-1][0, -1], hidden[len(hidden) // 2][0, -1]]).double()
    assert torch.allclose(together[0], alone, atol=1e-5)
    assert torch.allclose(prompt_features(model, prompts[1:], pad_id=0, micro_batch_size=1)[0], together[1], atol=1e-5)


def test_screening_keeps_mixed_questions_then_right_answers_then_chooses_at_random():
    """benchmarks/predict_learnability.py's simulation of the alternative to predicting: of 2 screening completions,
    the mixed first (2 and 4), then a right answer (1); without screening, any question, at random."""
    rng = np.random.default_rng(0)
    screened = np.array([[0, 0], [1, 1], [0, 1], [0, 0], [1, 0]])
    for _ in range(10):
        choice = screened_choice(screened, 3, rng)
        assert sorted(choice[:2]) == [2, 4] and choice[2] == 1
    firsts = {screened_choice(screened[:, :0], 1, rng)[0] for _ in range(100)}
    assert firsts == {0, 1, 2, 3, 4}
