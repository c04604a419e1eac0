"""vineppo.py: step splitting, step advantages and Monte-Carlo values; then the script end to end."""

import random

import pytest

import lilo_vineppo
import vineppo
from conftest import TINY_FLAGS, assert_logged, read_scalars, train

NL = 99  # a token id standing for a token with a line break


@pytest.mark.parametrize(
    "response, min_tokens, expected",
    [
        ([1, 2, 3, NL, 4, 5, 6, NL, 7, 8, 9], 2, [4, 8, 11]),  # boundaries right after each line break
        ([1, NL, 2, 3, 4, NL, 5, 6, 7], 3, [6, 9]),  # the 2-token first line joins the next step
        ([1, 2, 3, NL, 4], 3, [5]),  # a 1-token tail joins the step before it
        ([1, 2, 3, NL], 2, [4]),  # a response ending on a line break: no empty last step
        ([1, 2, 3], 1, [3]),  # no line break: one step
        ([NL], 1, [1]),
    ],
)
def test_split_steps_on_crafted_responses(response, min_tokens, expected):
    assert vineppo.split_steps(response, {NL}, min_tokens, max_steps=16) == expected


def test_split_steps_caps_the_number_of_steps():
    response = [1, NL] * 10  # ten 2-token lines
    ends = vineppo.split_steps(response, {NL}, min_step_tokens=1, max_steps=3)
    assert len(ends) == 3 and ends[-1] == len(response)
    assert all(end % 2 == 0 for end in ends), "merged steps still end on line breaks"


def test_split_steps_never_gives_empty_steps():
    rng = random.Random(0)
    for _ in range(500):
        response = [rng.choice([1, 2, NL]) for _ in range(rng.randint(1, 40))]
        ends = vineppo.split_steps(response, {NL}, rng.randint(1, 6), rng.randint(1, 8))
        assert ends[-1] == len(response)
        assert all(b > a for a, b in zip([0] + ends, ends)), (response, ends)


def test_step_advantages_by_hand():
    # two steps: tokens 0-1 and 2-4; V(s0) = 0.5, V(s1) = 0.25, reward 1
    advantages = vineppo.step_advantages([2, 5], [0.5, 0.25, 1.0], length=6)
    assert advantages.tolist() == pytest.approx([-0.25, -0.25, 0.75, 0.75, 0.75, 0.0])


@pytest.fixture(scope="module")
def coin_llm(coin_model):
    from common.vllm_utils import start_engine

    return start_engine(coin_model, seed=0, max_model_len=256, gpu_memory_utilization=0.3)


def test_mc_values_match_known_success_probabilities(coin_model, coin_llm):
    """After `\\boxed{1` the coin model can only close the brace and end: the value is 1 for gold 1, 0 for gold 2.
    From the prompt with a budget of 3 tokens it is cut off before any answer: 0, minus the unparseable
    penalty when one is set."""
    from transformers import AutoTokenizer

    from common.data import build_prompt

    tokenizer = AutoTokenizer.from_pretrained(coin_model)
    prompt, other_prompt = (build_prompt(tokenizer, f"what is {n}?", "coin") for n in (1, 2))
    answered = tokenizer("\\boxed{1")["input_ids"]
    prefixes = {
        tuple(prompt + answered): ("1", len(answered), "\\boxed{1"),
        tuple(other_prompt + answered): ("2", len(answered), "\\boxed{1"),
        tuple(prompt): ("1", 0, ""),
    }
    args = vineppo.Args(mc_rollouts=8, mc_temperature=1.0, top_p=1.0, max_new_tokens=3)
    assert list(vineppo.mc_values(coin_llm, prefixes, args).values()) == [1.0, 0.0, 0.0]
    args = vineppo.Args(**{**vars(args), "unparseable_penalty": 0.5})
    assert list(vineppo.mc_values(coin_llm, prefixes, args).values()) == [1.0, 0.0, -0.5]


@pytest.mark.parametrize("module", [vineppo, lilo_vineppo], ids=["vineppo", "lilo_vineppo"])
def test_mc_value_is_the_mean_over_all_k_rollouts(module, coin_model, coin_llm):
    """From the prompt, the coin model is right half the time: the mean of K = 16 rollouts lies strictly between
    0 and 1 (one rollout, or any single completion, would give exactly 0 or 1)."""
    from transformers import AutoTokenizer

    from common.data import build_prompt

    tokenizer = AutoTokenizer.from_pretrained(coin_model)
    prompt = build_prompt(tokenizer, "what is 1?", "coin")
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=8)
    (value,) = module.mc_values(coin_llm, {tuple(prompt): ("1", 0, "")}, args).values()
    assert 0.2 < value < 0.8 and value * 16 == round(value * 16)


@pytest.mark.parametrize("module", [vineppo, lilo_vineppo], ids=["vineppo", "lilo_vineppo"])
def test_mc_rollouts_get_the_references_budget_and_score_0_when_cut_off(module, coin_model, coin_llm):
    """As in the papers' code, a rollout from a state may use --max-new-tokens, or what the context has left,
    and one cut off at that budget scores 0. The coin model needs 3 more tokens after `\\boxed{` (answer, brace,
    end of sequence) and 7 from the prompt."""
    from transformers import AutoTokenizer

    from common.data import build_prompt

    tokenizer = AutoTokenizer.from_pretrained(coin_model)
    prompt = build_prompt(tokenizer, "what is 1?", "coin")
    boxed = tokenizer("\\boxed{")["input_ids"]
    started = {tuple(prompt + boxed): ("1", len(boxed), "\\boxed{")}
    # 6 new tokens: the rollout may use all 6 (the context allows it), not the 6 - 4 its prefix left, which
    # would cut it off after "1}"
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=6, max_prompt_tokens=len(prompt) + 4)
    (value,) = module.mc_values(coin_llm, started, args).values()
    assert 0.2 < value < 0.8
    # a context of 2 tokens fewer than the prompt + 8: each rollout from the prompt gets 6 tokens, is cut off
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=8, max_prompt_tokens=len(prompt) - 2)
    (value,) = module.mc_values(coin_llm, {tuple(prompt): ("1", 0, "")}, args).values()
    assert value == 0.0


TINY_RUN = [*TINY_FLAGS, "--eval-interval", "1", "--mc-rollouts", "2", "--min-step-tokens", "1"]


@pytest.fixture(scope="module")
def vineppo_run(tiny_model, tmp_path_factory):
    return train("vineppo.py", tiny_model, tmp_path_factory.mktemp("runs"), "--num-iterations", "2", *TINY_RUN)


def test_end_to_end_logs_metrics_and_checkpoints(vineppo_run, tiny_model):
    run_dir, result = vineppo_run
    assert "iter 2/2 train_acc=" in result.stdout
    scalars = read_scalars(run_dir)
    assert_logged(
        scalars,
        [
            "charts/train_accuracy",
            "charts/kl",
            "charts/mc_completions",
            "charts/steps_per_completion",
            "losses/policy_loss",
            "losses/entropy",
            "time/mc_rollouts",
            "time/sync",
        ],
        [1, 2],
    )
    assert "losses/value_loss" not in scalars
    # at least the 2 prompts' values, each from 2 rollouts
    assert all(v >= 2 * 2 for _, v in scalars["charts/mc_completions"])
    assert_logged(scalars, ["charts/test_accuracy", "charts/train_subset_accuracy"], [0, 1, 2])
    # that the policy learns is shown on the coin model (tests/test_trainers.py): here every reward is 0
    assert (run_dir / "checkpoint" / "policy" / "model.safetensors").exists()
    assert not (run_dir / "checkpoint" / "value").exists()
