"""vineppo.py: step splitting, step advantages and Monte-Carlo values; then the script end to end."""

import random

import pytest

import lilo_vineppo
import vineppo
from conftest import TINY_FLAGS, assert_logged, read_scalars, share_of_tensors_changed, train

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


def test_mc_values_match_known_success_probabilities(tiny_model):
    """After a prefix that already holds the final answer, the random tiny model cannot change it
    (it never writes another \\boxed{}), so the true value is 1 for the right gold answer and 0
    for a wrong one; a prefix holding no answer is worth 0."""
    from transformers import AutoTokenizer

    from common.vllm_utils import start_engine

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    llm = start_engine(tiny_model, seed=0, max_model_len=256, gpu_memory_utilization=0.3)
    prompt = tokenizer("What is 2 + 3?")["input_ids"]
    answered = tokenizer(" 2 + 3 = 5. The answer is \\boxed{5}.\n")["input_ids"]
    unanswered = tokenizer(" Let me think.\n")["input_ids"]
    prefixes = {
        tuple(prompt + answered): ("5", len(answered), tokenizer.decode(answered)),
        tuple(prompt + answered + [0]): ("6", len(answered) + 1, tokenizer.decode(answered + [0])),
        tuple(prompt + unanswered): ("\\frac{1}{7}", len(unanswered), tokenizer.decode(unanswered)),
    }
    args = vineppo.Args(mc_rollouts=8, mc_temperature=1.0, top_p=1.0, max_new_tokens=40)
    values = vineppo.mc_values(llm, prefixes, args)
    assert list(values.values()) == [1.0, 0.0, 0.0]
    values = vineppo.mc_values(llm, prefixes, vineppo.Args(**{**vars(args), "unparseable_penalty": 0.5}))
    assert list(values.values()) == [1.0, 0.0, -0.5]  # the unanswered prefix stays unparseable


@pytest.fixture(scope="module")
def coin_llm(coin_model):
    from common.vllm_utils import start_engine

    return start_engine(coin_model, seed=0, max_model_len=256, gpu_memory_utilization=0.3)


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
    assert (
        share_of_tensors_changed(
            f"{tiny_model}/model.safetensors", run_dir / "checkpoint" / "policy" / "model.safetensors"
        )
        > 0.5
    )
    assert not (run_dir / "checkpoint" / "value").exists()
