"""vineppo.py: step splitting, step advantages and Monte-Carlo values; then the script end to end."""

import shutil

import pytest

import lilo_vineppo
import vineppo
from common.steps import split_gsm8k, split_math
from conftest import TINY_FLAGS, assert_logged, read_scalars, stop_message, train

VINEPPO_MODULES = pytest.mark.parametrize("module", [vineppo, lilo_vineppo], ids=lambda m: m.__name__)


def token_steps(tokenizer, steps):
    """A response made of `steps` tokenised one by one, and the token index where each step ends."""
    ids = [tokenizer(step, add_special_tokens=False)["input_ids"] for step in steps]
    return sum(ids, []), [sum(map(len, ids[: k + 1])) for k in range(len(ids))]


@VINEPPO_MODULES
@pytest.mark.parametrize(
    "step_split, steps",
    [
        # GSM8K (the reference's tasks/gsm8k.py): a step per line, the "#### answer" tail joins the last line
        ("gsm8k", ["Tom has 3 + 4 = 7 apples.", "\nHe gives away 2, so 7 - 2 = 5.\n\n#### 5"]),
        ("gsm8k", ["\n\nFirst line after blank lines.", "\nSecond.", "\n", "\nThe answer is \\boxed{2}."]),
        # MATH (tasks/math_extract_steps_inplace.py): sentences too, never inside maths; a short part joins the next
        ("math", ["We need $x$ such that $2x + 3 = 11$.", " Subtracting 3 from both sides gives $2x = 8$.",
                  " So $x = \\boxed{4}$."]),
        ("math", ["Let the side be $s$.", " Then the area is $s^2 = 49$, and so $s = 7$.",
                  "\nThe perimeter is $4s = \\boxed{28}$."]),
    ],
)  # fmt: skip
def test_response_steps_cut_where_the_reference_cuts(module, tokenizer, step_split, steps):
    """Steps tokenised one by one, so each boundary falls between tokens: the ends must be exactly there, and
    the EOS the engine appends belongs to the last step. (common/steps.py's rules: tests/test_steps.py.)"""
    splitter = split_gsm8k if step_split == "gsm8k" else split_math
    assert splitter("".join(steps)) == steps  # the reference's boundaries, worked out from its code
    response, ends = token_steps(tokenizer, steps)
    assert module.response_steps(tokenizer, response, step_split) == ends
    assert module.response_steps(tokenizer, response + [tokenizer.eos_token_id], step_split) == ends[:-1] + [
        ends[-1] + 1
    ]


def test_gsm8k_and_math_rules_differ_on_sentences(tokenizer):
    """The same text: GSM8K cuts at line breaks only, MATH at sentence ends too."""
    response, _ = token_steps(tokenizer, ["First we add 12 and 30 to get 42. Then we halve it to get 21.", "\n#### 21"])
    assert len(vineppo.response_steps(tokenizer, response, "gsm8k")) == 1
    assert len(vineppo.response_steps(tokenizer, response, "math")) == 2


@VINEPPO_MODULES
def test_step_advantages_by_hand(module):
    # two steps: tokens 0-1 and 2-4; V(s0) = 0.5, V(s1) = 0.25, reward 1
    advantages = module.step_advantages([2, 5], [0.5, 0.25, 1.0], length=6)
    assert advantages.tolist() == pytest.approx([-0.25, -0.25, 0.75, 0.75, 0.75, 0.0])


@pytest.fixture(scope="module")
def coin_llm(coin_model):
    from common.vllm_utils import start_engine

    return start_engine(coin_model, seed=0, max_model_len=256, gpu_memory_utilization=0.3)


@VINEPPO_MODULES
def test_mc_values_match_known_success_probabilities(module, tokenizer, coin_llm):
    """After `\\boxed{1` the coin model can only close the brace and end: the value is 1 for gold 1, 0 for gold 2.
    From the prompt with a budget of 3 tokens it is cut off before any answer: 0, minus the unparseable
    penalty when one is set. Each value comes with its K rollouts."""
    from common.data import build_prompt

    prompt, other_prompt = (build_prompt(tokenizer, f"what is {n}?", "coin") for n in (1, 2))
    answered = tokenizer("\\boxed{1")["input_ids"]
    prefixes = {
        tuple(prompt + answered): ("1", "\\boxed{1"),
        tuple(other_prompt + answered): ("2", "\\boxed{1"),
        tuple(prompt): ("1", ""),
    }
    args = module.Args(mc_rollouts=8, mc_temperature=1.0, top_p=1.0, max_new_tokens=3)
    values, completions = module.mc_values(coin_llm, prefixes, args)
    assert list(values.values()) == [1.0, 0.0, 0.0] and [len(cs) for cs in completions] == [8, 8, 8]
    args = module.Args(**{**vars(args), "unparseable_penalty": 0.5})
    assert list(module.mc_values(coin_llm, prefixes, args)[0].values()) == [1.0, 0.0, -0.5]


@VINEPPO_MODULES
def test_mc_rollouts_sample_at_the_mc_temperature(module, tokenizer, coin_llm):
    """--mc-temperature, not the training rollouts' --temperature: at temperature 1 the coin model, after
    `\\boxed{1`, closes the brace and ends (logit 30 against -30 for every other token), so every rollout is right;
    at 50 its 49,152 tokens are close to equally likely and next to none would be."""
    from common.data import build_prompt

    prompt = build_prompt(tokenizer, "what is 1?", "coin")
    answered = tokenizer("\\boxed{1")["input_ids"]
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, temperature=50.0, max_new_tokens=4)
    values, _ = module.mc_values(coin_llm, {tuple(prompt + answered): ("1", "\\boxed{1")}, args)
    assert list(values.values()) == [1.0]


@VINEPPO_MODULES
def test_mc_value_is_the_mean_over_all_k_rollouts(module, tokenizer, coin_llm):
    """From the prompt, the coin model is right half the time: the mean of K = 16 rollouts lies strictly between
    0 and 1 (one rollout, or any single completion, would give exactly 0 or 1)."""
    from common.data import build_prompt

    prompt = build_prompt(tokenizer, "what is 1?", "coin")
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=8)
    (value,) = module.mc_values(coin_llm, {tuple(prompt): ("1", "")}, args)[0].values()
    assert 0.2 < value < 0.8 and value * 16 == round(value * 16)


@VINEPPO_MODULES
def test_mc_rollouts_get_the_references_budget_and_score_0_when_cut_off(module, tokenizer, coin_llm):
    """As in the papers' code, a rollout from a state may use --max-new-tokens, or what the context has left,
    and one cut off at that budget scores 0. The coin model needs 3 more tokens after `\\boxed{` (answer, brace,
    end of sequence) and 7 from the prompt."""
    from common.data import build_prompt

    prompt = build_prompt(tokenizer, "what is 1?", "coin")
    boxed = tokenizer("\\boxed{")["input_ids"]
    started = {tuple(prompt + boxed): ("1", "\\boxed{")}
    # 6 new tokens: the rollout may use all 6 (the context allows it), not the 6 - 4 its prefix left, which
    # would cut it off after "1}"
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=6, max_prompt_tokens=len(prompt) + 4)
    (value,) = module.mc_values(coin_llm, started, args)[0].values()
    assert 0.2 < value < 0.8
    # a context of 2 tokens fewer than the prompt + 8: each rollout from the prompt gets 6 tokens, is cut off
    args = module.Args(mc_rollouts=16, mc_temperature=1.0, max_new_tokens=8, max_prompt_tokens=len(prompt) - 2)
    (value,) = module.mc_values(coin_llm, {tuple(prompt): ("1", "")}, args)[0].values()
    assert value == 0.0


TINY_RUN = [*TINY_FLAGS, "--eval-interval", "1", "--mc-rollouts", "2"]


@pytest.fixture(scope="module")
def lilo_vineppo_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    # LILO-VinePPO, the README's first command: its run on the coin model is in `pytest -m slow` (vineppo.py's is not)
    yield train("lilo_vineppo.py", tiny_model, folder, "--num-iterations", "2", *TINY_RUN)
    shutil.rmtree(folder)  # checkpoints: the suite would hold gigabytes (see pyproject.toml)


def test_end_to_end_logs_metrics_and_checkpoints(lilo_vineppo_run, tiny_model):
    run_dir, result = lilo_vineppo_run
    assert "iter 2/2 train_acc=" in result.stdout
    scalars = read_scalars(run_dir)
    assert_logged(
        scalars,
        [
            "charts/train_accuracy",
            "charts/kl",
            "charts/mc_completions",
            "charts/steps_per_completion",
            "charts/step_advantage_spread",
            "charts/value_moved_share",
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
    assert_logged(scalars, ["charts/test_accuracy", "charts/train_split_accuracy"], [0, 1, 2])
    # that the policy learns is shown on the coin model (tests/test_trainers.py): here every reward is 0
    assert (run_dir / "checkpoint" / "policy" / "model.safetensors").exists()
    assert not (run_dir / "checkpoint" / "value").exists()


@pytest.mark.slow  # the count is unit-tested (tests/test_steps.py); this run shows the flag reaches it
def test_max_value_steps_0_estimates_the_prompt_alone(tiny_model, tmp_path):
    """--max-value-steps caps the states given a Monte-Carlo value (the GSM8K recipe: 25): with 0, only s_0 of
    each question is estimated, so 2 questions x K = 2 rollouts per iteration, however many steps the
    completions have (the later states are worth the reward)."""
    run_dir, _ = train("vineppo.py", tiny_model, tmp_path, "--num-iterations", "1", *TINY_RUN, "--max-value-steps", "0")
    scalars = read_scalars(run_dir)
    assert [v for _, v in scalars["charts/mc_completions"]] == [4.0]


@VINEPPO_MODULES
def test_credit_diagnostics_by_hand(module):
    """Step advantages' spread within completions of 2+ steps, and the share of valued states after a step whose
    value left V(s_0); a backfilled state (past --max-value-steps) or a one-step completion counts in neither."""
    step_values = [
        [0.5, 0.5, 1.0],  # advantages 0, 0.5: std 0.25; s_1 valued and equal to V(s_0)
        [0.25, 0.75, 0.75, 0.75],  # advantages 0.5, 0, 0: std 0.2357; s_1 moved, s_2 moved, s_3 backfilled
        [0.5, 0.0],  # one step: no spread, no state after a step
    ]
    spread, moved = module.credit_diagnostics(step_values, [2, 3, 1])
    assert spread == pytest.approx((0.25 + (2**0.5) / 6) / 2) and moved == pytest.approx(2 / 3)
    assert module.credit_diagnostics([[0.5, 0.5, 0.5, 1.0]], [3]) == (pytest.approx(0.2357, abs=1e-4), 0.0)
    assert module.credit_diagnostics([[0.5, 1.0], [0.0, 0.0]], [1, 1]) == (0.0, 0.0)  # single steps: a baseline


@pytest.mark.parametrize(
    "flags, message",
    [(["--step-split", "lines"], "--step-split must be gsm8k or math"),
     (["--max-value-steps", "-1"], "--max-value-steps must be >= 0")],
)  # fmt: skip
def test_check_args_rejects_unknown_step_rules(flags, message, tmp_path):
    assert stop_message("vineppo.py", "--output-dir", str(tmp_path / "runs"), *flags) == f"error: {message}"
