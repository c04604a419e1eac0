"""A question's solve rate predicted before generating for it, for the predicted-learnability trainers
(`lilo_*_predicted.py`): a model's representation of the question's prompt, and a ridge regression on it of the solve
rates the run has observed so far. Its offline check: benchmarks/predict_learnability.py."""

import numpy as np
import torch
from scipy.stats import spearmanr

from common.logprobs import model_inputs, pad_batch


@torch.no_grad()
def prompt_features(model, prompts: list[list[int]], pad_id: int, micro_batch_size: int, device="cpu"):
    """Each prompt's representation: `model`'s hidden state at the prompt's last token, from its last layer and its
    middle one, in float64 on the CPU. Every rank computes all of them (under FSDP each forward pass is collective),
    so every rank predicts alike."""
    batch = pad_batch(prompts, [[pad_id]] * len(prompts), pad_id, device, share_prompts=False)
    last = batch["input_ids"].shape[1] - 2  # the prompts' last column, before a one-token stand-in response
    features = []
    for rows in torch.arange(len(prompts)).split(micro_batch_size):
        hidden = model(**model_inputs(batch, rows), output_hidden_states=True, logits_to_keep=1).hidden_states
        features.append(torch.cat([hidden[-1][:, last], hidden[len(hidden) // 2][:, last]], 1).double().cpu())
    return torch.cat(features)


def predict_solve_rates(features: torch.Tensor, seen: list[tuple], ridge: float) -> torch.Tensor:
    """Each candidate's solve rate p (one row of `features` each), predicted from `seen`, the (features, observed p,
    predicted p) of each question generated for so far: a ridge regression of the observed p on the standardised
    features, in its dual form (fewer questions than features). NaN, no prediction, while fewer than two are known."""
    if len(seen) < 2:
        return torch.full((len(features),), float("nan"), dtype=torch.float64)
    seen_features, seen_rates = torch.stack([f for f, _, _ in seen]), torch.tensor([p for _, p, _ in seen]).double()
    mean, std = seen_features.mean(0), seen_features.std(0) + 1e-6
    x, y = (seen_features - mean) / std, seen_rates - seen_rates.mean()
    weights = x.T @ torch.linalg.solve(x @ x.T + ridge * torch.eye(len(x), dtype=x.dtype), y)
    return (((features - mean) / std) @ weights + seen_rates.mean()).clamp(0, 1)


def prediction_spearman(seen: list[tuple]) -> float:
    """Spearman's rank correlation of the predicted and the observed p over the questions generated for with a
    prediction; NaN with fewer than three, or when either side has no spread."""
    pairs = np.array([(predicted, observed) for _, observed, predicted in seen if not np.isnan(predicted)])
    if len(pairs) < 3 or pairs[:, 0].std() == 0 or pairs[:, 1].std() == 0:
        return float("nan")
    return float(spearmanr(pairs[:, 0], pairs[:, 1])[0])
