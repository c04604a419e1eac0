"""ppo.py (and the LILO files built on it): GAE and the value loss by hand; bad input (the losses every trainer
shares: tests/test_trainers.py)."""

import pytest
import torch

import lilo_ppo
import lilo_ppo_buffered
import ppo
from conftest import run_script, stop_message

PPO_MODULES = pytest.mark.parametrize("module", [ppo, lilo_ppo, lilo_ppo_buffered], ids=lambda m: m.__name__)


@PPO_MODULES
def test_gae_matches_hand_computation(module):
    # one sequence of 3 tokens, gamma 0.9, lambda 0.5; V after the last token is 0
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.4, 0.6]])
    mask = torch.ones(1, 3)
    advantages, returns = module.compute_gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d2 = 1.0 - 0.6
    d1 = 0.0 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2, a1 = d2, d1 + 0.45 * d2
    a0 = d0 + 0.45 * a1
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2])
    assert returns.tolist()[0] == pytest.approx([a0 + 0.2, a1 + 0.4, a2 + 0.6])


@PPO_MODULES
def test_gae_ignores_padding_after_the_last_token(module):
    # the second sequence ends after 1 token: its padding must not leak into its advantage
    rewards = torch.tensor([[0.0, 1.0], [1.0, 5.0]])
    values = torch.tensor([[0.5, 0.5], [0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    advantages, returns = module.compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages[1].tolist() == pytest.approx([1.0 - 0.3, 0.0])
    assert returns[1, 1] == 0
    assert advantages[0].tolist() == pytest.approx([1.0 - 0.5, 1.0 - 0.5])


@PPO_MODULES
def test_clipped_value_loss_and_mask(module):
    """The larger of the clipped and the unclipped squared errors, halved, over the unmasked tokens. Token 2's
    clipped error is the larger: its value moved 0.5 towards the return, but the clipped value only 0.2."""
    values = torch.tensor([[1.0, 0.0, 0.5, 100.0]])
    old_values = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the fourth token is padding: its huge error must not count
    v_loss, stats = module.value_loss(values, old_values, returns, mask, mask.sum(), module.Args())
    # token 0: max((1-0)^2, (0.2-0)^2) = 1; token 1: max(1, 1) = 1; token 2: max((0.5-1)^2, (0.2-1)^2) = 0.64
    assert v_loss.item() == pytest.approx(0.5 * (1 + 1 + 0.64) / 3)
    # a micro-batch of a larger minibatch: the loss is divided by the minibatch's tokens, the logged mean by its own
    v_loss, stats = module.value_loss(values, old_values, returns, mask, torch.tensor(6.0), module.Args())
    assert v_loss.item() == pytest.approx(0.5 * (1 + 1 + 0.64) / 6) and stats["value_loss"] == pytest.approx(0.44)


def test_bad_input_ends_with_one_clear_line_and_no_run_folder(tiny_model, tmp_path):
    """As a user sees it, in a new interpreter: one `error:` line, no traceback, no empty run folder left behind."""
    result = run_script("ppo.py", "--model", tiny_model, "--output-dir", str(tmp_path / "runs"), "--dataset", "nosuch")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    error = "error: --dataset nosuch: not one of arithmetic, gsm8k, math, orz57k, nor an existing file"
    assert result.stderr.strip().splitlines() == [error]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("ppo.py", ["--model", "./no/such/folder"], "no such folder"),
        ("ppo.py", ["--model", "org/not-cached-anywhere"], "the Hugging Face hub cannot be reached"),
        ("ppo.py", ["--questions-per-iteration", "3"], "multiple of --minibatch-size"),
        ("ppo.py", ["--value-learning-rate", "0"], "--value-learning-rate must be positive"),
        # the lines above are the same in every trainer (common/args.py, common/data.py, common/model.py); GRPO's own
        ("grpo.py", ["--completions-per-question", "1", "--minibatch-size", "4", "--micro-batch-size", "4"],
         "--completions-per-question must be at least 2"),
    ],
)  # fmt: skip
def test_bad_input_stops_with_a_clear_error_before_the_run_starts(script, flags, message, tiny_model, tmp_path):
    model = [] if "--model" in flags else ["--model", tiny_model]
    stopped = stop_message(script, *model, "--output-dir", str(tmp_path / "runs"), *flags)
    assert stopped.startswith("error: ") and message in stopped and "\n" not in stopped
    assert not (tmp_path / "runs").exists()  # no empty run left behind to clutter tensorboard
