"""benchmarks/learning_curves.py: its statistics on crafted data, then a short real run of three configurations."""

import argparse
import signal
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TINY_FLAGS

sys.path.insert(0, str(ROOT / "benchmarks"))
import learning_curves as lc  # noqa: E402


def test_mean_interval_is_the_student_t_interval():
    mean, low, high = lc.mean_interval([0.4, 0.5, 0.6, 0.5, 0.5])
    half = 2.7764451 * np.sqrt(0.02 / 4) / np.sqrt(5)  # t(0.975, 4 degrees of freedom) x standard error
    assert mean == pytest.approx(0.5) and (low, high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert np.isnan(lc.mean_interval([0.3])[1])  # one seed: no interval


def test_mean_interval_stays_within_what_the_quantity_can_take():
    """Two seeds of a share, 0.1 and 0.9: the t interval is 0.5 +- 5.1; the table must not print -460% or 560%."""
    assert lc.mean_interval([0.1, 0.9]) == (pytest.approx(0.5), 0.0, 1.0)
    # steps per completion, at least 1: mean 2, standard error 1, t(0.975, 1 degree of freedom) = 12.706
    assert lc.mean_interval([1.0, 3.0], bounds=(1, np.inf))[1:] == (1, pytest.approx(2 + 12.706205))


def test_the_summary_corrects_each_p_value_over_the_tables_comparisons(tmp_path):
    """The 60 runs' 17 comparisons are one family: the summary's adjusted p is each p times the number of
    comparisons in its table. Two seeds here, so each t-test has one degree of freedom (a Cauchy distribution: p = 1
    - 2 arctan|t| / pi): vineppo - ppo differs by 0.3 and 0.4 (t = 7), grpo - ppo by 0.1 and 0 (t = 1)."""
    assert len(lc.COMPARISONS) == 17  # the family docs/results.md names
    right = {"ppo": (2, 3), "vineppo": (5, 7), "grpo": (3, 3)}  # of 10 questions, on seeds 1 and 2
    tables = {}
    for config, counts in right.items():
        runs = []
        for seed, count in zip((1, 2), counts):
            rows = {"charts/test_accuracy": [0.1, count / 10], "charts/all_correct_share": [np.nan, 0.0],
                    "charts/all_wrong_share": [np.nan, 0.5], "train_minutes": [0.0, 1.0],
                    "time/iteration": [np.nan, 60.0]}  # fmt: skip
            runs.append(pd.DataFrame(rows, index=pd.Index([0, 4], name="iteration")).assign(seed=seed))
            grades = [{"iteration": 4, "question": f"q{i}", "correct": int(i < count)} for i in range(10)]
            pd.DataFrame(grades).to_csv(tmp_path / f"{config}__seed{seed}__test.csv", index=False)
        tables[config] = pd.concat(runs)
    text = lc.summary(tables, tmp_path)
    p_vine, p_grpo = 1 - 2 * np.arctan(7) / np.pi, 1 - 2 * np.arctan(1) / np.pi
    assert f"| {p_vine:.3f} | {2 * p_vine:.3f} |" in text.split("| vineppo − ppo |")[1].splitlines()[0]
    assert f"| {p_grpo:.3f} | 1.000 |" in text.split("| grpo − ppo |")[1].splitlines()[0]  # 2p, at most 1


def test_bonferroni_multiplies_by_the_comparisons_that_have_a_p_value():
    adjusted = lc.bonferroni([0.01, float("nan"), 0.03, 0.6])  # a 1-seed comparison has no p-value: m = 3
    assert adjusted[0] == pytest.approx(0.03) and np.isnan(adjusted[1]) and adjusted[2:] == [pytest.approx(0.09), 1]


def test_paired_difference_of_identical_grades_is_zero():
    grades = {s: np.random.default_rng(s).integers(0, 2, 200) for s in range(5)}
    d = lc.paired_difference(grades, grades)
    assert (d["difference"], d["low"], d["high"], d["seeds"]) == (0, 0, 0, 5)


def test_paired_difference_one_seed_is_the_question_bootstrap():
    """One seed: the interval is the mean's over resampled questions, about mean +- 1.96 sd / sqrt(n)."""
    n = 4000
    base = np.zeros(n, dtype=int)
    correct = np.zeros(n, dtype=int)
    correct[: int(0.3 * n)] = 1  # 30% of questions +1
    base[int(0.3 * n) : int(0.4 * n)] = 1  # 10% -1: differences have mean 0.2 and sd 0.6
    d = lc.paired_difference({1: correct}, {1: base})
    half = 1.96 * 0.6 / np.sqrt(n)
    assert d["difference"] == pytest.approx(0.2)
    assert d["low"] == pytest.approx(0.2 - half, abs=0.1 * half)
    assert d["high"] == pytest.approx(0.2 + half, abs=0.1 * half)


def test_paired_difference_resamples_the_seeds():
    """Seeds whose differences are 0.1 ... 0.5 on many questions (little question noise): the interval is that of
    a bootstrap over the seeds, computed here directly; the t-test's p-value is scipy's on the five differences."""
    n, rng = 20_000, np.random.default_rng(0)
    correct, base, diffs = {}, {}, [0.1, 0.2, 0.3, 0.4, 0.5]
    for seed, diff in enumerate(diffs):
        base[seed] = np.zeros(n, dtype=int)
        correct[seed] = (np.arange(n) < diff * n).astype(int)
    d = lc.paired_difference(correct, base)
    direct = rng.choice(diffs, size=(20_000, 5)).mean(1)
    assert (d["low"], d["high"]) == (
        pytest.approx(np.percentile(direct, 2.5), abs=0.01),
        pytest.approx(np.percentile(direct, 97.5), abs=0.01),
    )
    t = np.mean(diffs) / (np.std(diffs, ddof=1) / np.sqrt(5))
    assert t == pytest.approx(4.2426, abs=1e-3) and d["p"] == pytest.approx(0.01324, abs=2e-4)  # t(4)'s two tails
    flipped = lc.paired_difference(base, correct)
    assert flipped["difference"] == pytest.approx(-d["difference"]) and flipped["p"] == pytest.approx(d["p"])


def test_paired_difference_rejects_grades_that_do_not_pair():
    with pytest.raises(ValueError, match="same questions"):
        lc.paired_difference({1: np.ones(10)}, {1: np.ones(12)})
    with pytest.raises(ValueError, match="0/1"):
        lc.paired_difference({1: np.full(10, 2)}, {1: np.zeros(10)})


def curve(seed: int, accuracies: dict) -> pd.DataFrame:
    table = pd.DataFrame({"seed": seed, "charts/test_accuracy": pd.Series(accuracies)})
    table.index.name = "iteration"
    return table


def test_p_values_print_without_a_false_zero_or_a_nan():
    assert lc.p_text(float("nan")) == "n/a (1 seed)"
    assert lc.p_text(0.0004) == "< 0.001"
    assert lc.p_text(0.0412) == "0.041"


def test_iterations_to_reach_the_bases_final_accuracy_on_the_same_seed():
    base = pd.concat([curve(1, {0: 0.4, 4: 0.45, 8: 0.5}), curve(2, {0: 0.4, 4: 0.6, 8: 0.55})])
    table = pd.concat([curve(1, {0: 0.4, 4: 0.5, 8: 0.6}), curve(2, {0: 0.4, 4: 0.5, 8: 0.54}), curve(3, {0: 1})])
    assert lc.iterations_to_reach(table, base) == {1: 4, 2: None}  # seed 3: no base run


def test_accuracy_at_equal_budget_interpolates_both_runs_at_the_cheaper_ones_final_budget():
    tokens = "charts/cumulative_tokens_generated"
    table = curve(1, {0: 0.2, 2: np.nan, 4: 0.4, 8: 0.6}).assign(**{tokens: [np.nan, 150, 400, 800]})
    base = curve(1, {0: 0.2, 4: 0.3, 8: 0.5}).assign(**{tokens: [np.nan, 100, 200]})
    base = pd.concat([base, curve(2, {0: 0.3}).assign(**{tokens: np.nan})])  # seed 2: no run of `table`
    # at 200 tokens, the base's last: `table` is half-way from 0 to its iteration 4 (0.3), the base at 0.5
    assert lc.accuracy_at_equal_budget(table, base, tokens) == {1: pytest.approx(-0.2)}
    assert lc.accuracy_at_equal_budget(base.loc[base["seed"] == 1], table, tokens) == {1: pytest.approx(0.2)}


def test_matched_configurations_generate_what_lilo_generates():
    assert lc.config_flags("ppo_matched", "") == ["--questions-per-iteration", "16"]
    matched = lc.config_flags("vineppo_matched", "--lr 1 --questions-per-iteration 8")
    assert matched == ["--questions-per-iteration", "32"]
    assert lc.config_flags("lilo_ppo", "") == []
    # the equal-step control: LILO's pool, trained on in as many optimiser steps as the base takes
    batch = lc.config_flags("grpo_matched_batch", "--minibatch-size 16")
    assert batch == ["--questions-per-iteration", "16", "--minibatch-size", "64"]
    assert len(lc.DEFAULT_CONFIGS) == 12


@pytest.mark.parametrize("trainer", ["ppo", "vineppo", "grpo"])
def test_the_scripts_defaults_are_the_trainers(trainer):
    args = __import__(trainer).Args()
    assert {name: getattr(args, name) for name in lc.TRAINER_DEFAULTS} == lc.TRAINER_DEFAULTS
    assert __import__(f"lilo_{trainer}").Args().oversample == lc.LILO_OVERSAMPLE


def test_a_short_run_writes_paired_grades_and_a_summary(tiny_model, tmp_path):
    """Two configurations, one seed, two iterations of a tiny random model: each run's per-question grades land next
    to its CSV, the matched baseline trains on LILO's pool size, and the summary pairs the runs."""
    at = TINY_FLAGS.index("--eval-size")
    flags = TINY_FLAGS[:at] + TINY_FLAGS[at + 2 :]  # the script sets the evaluation itself
    results = tmp_path / "results"
    result = lc.subprocess.run(
        [sys.executable, "benchmarks/learning_curves.py", "--configs", "lilo_ppo", "ppo_matched", "--seeds", "3"]
        + ["--iterations", "2", "--eval-interval", "2", "--eval-size", "6", "--results-dir", str(results)]
        + ["--runs-dir", str(tmp_path / "runs"), "--trainer-args", " ".join(["--model", tiny_model, *flags])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    grades = {c: pd.read_csv(results / f"{c}__seed3__test.csv") for c in ("lilo_ppo", "ppo_matched")}
    for table in grades.values():
        assert sorted(set(table["iteration"])) == [0, 2] and len(table) == 12 and set(table["correct"]) <= {0, 1}
    assert grades["ppo_matched"]["question"].tolist() == grades["lilo_ppo"]["question"].tolist()
    scalars = {c: pd.read_csv(results / f"{c}__seed3.csv", index_col="iteration") for c in grades}
    matched, lilo = scalars["ppo_matched"], scalars["lilo_ppo"]
    assert matched["completions_per_iteration"].iloc[0] == 4 * lilo["completions_per_iteration"].iloc[0]
    assert lilo["charts/completions_generated"].iloc[-1] == matched["completions_per_iteration"].iloc[0]
    assert (scalars["ppo_matched"]["charts/cumulative_tokens_generated"].diff().dropna() > 0).all()
    summary = (results / "summary.md").read_text()
    assert "not logged" not in summary
    assert "| lilo_ppo − ppo_matched | learnability sampling at equal generation (4x the steps) | 1 |" in summary
    assert "nan" not in summary
    assert (results / "test_accuracy.png").exists()


def test_a_trainer_stopped_before_its_first_iteration_is_reported_as_stopped(tmp_path, monkeypatch):
    """A SIGTERM during the trainer's start (before it installs its handler) kills it with no checkpoint: the
    script says so and how to start it again, not that the trainer failed."""
    real_popen = lc.subprocess.Popen

    def popen_then_stop(*args, **kwargs):  # the real trainer, sent SIGTERM one second into its start
        process = real_popen(*args, **kwargs)
        threading.Timer(1.0, process.send_signal, [signal.SIGTERM]).start()
        return process

    monkeypatch.setattr(lc.subprocess, "Popen", popen_then_stop)
    args = argparse.Namespace(runs_dir=tmp_path, iterations=2, eval_interval=2, eval_size=6, trainer_args="")
    with pytest.raises(SystemExit, match="stopped: ppo seed 1 before its first iteration"):
        lc.run_to_csv("ppo", 1, args, tmp_path / "ppo__seed1.csv")


def test_every_configuration_has_its_roles_colour_in_its_algorithms_panel():
    """Base, LILO, _matched and _matched_batch: the same colour and line style in every algorithm's panel, so that
    one legend reads them all, and four distinct ones within a panel."""
    for algorithm in lc.ALGORITHMS:
        configs = [algorithm, f"lilo_{algorithm}", f"{algorithm}_matched", f"{algorithm}_matched_batch"]
        assert [lc.role(c) for c in configs] == list(lc.ROLES)
        assert {lc.algorithm_of(c) for c in configs} == {algorithm}
    assert len({(color, style) for color, style, _ in lc.ROLES.values()}) == len(lc.ROLES)
    assert all(not label.startswith("_") for *_, label in lc.ROLES.values())  # matplotlib would leave it out
    assert {lc.algorithm_of(c) for c in lc.CONFIGS} == set(lc.ALGORITHMS)


def test_the_plots_draw_one_column_per_algorithm(tmp_path, monkeypatch):
    """Two algorithms' configurations: two columns, in ALGORITHMS' order; held-out accuracy in a row against
    iterations and one against generated tokens, each panel its algorithm's runs in their roles' colours; the
    zero-variance share against iterations alone, with LILO's pool as a dotted line; every figure written."""
    tokens = "charts/cumulative_tokens_generated"
    rows = {"charts/test_accuracy": [0.2, np.nan, 0.3], "train_minutes": [0.0, 0.5, 1.0],
            "charts/all_correct_share": [np.nan, 0.0, 0.25], "charts/all_wrong_share": [np.nan, 0.5, 0.25],
            tokens: [np.nan, 100, 200], "charts/cumulative_tokens_trained": [np.nan, 100, 200]}  # fmt: skip
    lilo = {"charts/pool_all_correct_share": [np.nan, 0.25, 0.25], "charts/pool_all_wrong_share": [np.nan, 0.5, 0.5],
            "charts/batch_learnability": [np.nan, 0.2, 0.2],
            "charts/pool_learnability": [np.nan, 0.1, 0.1]}  # fmt: skip
    tables = {}
    for config in ["grpo", "lilo_grpo", "grpo_matched", "grpo_matched_batch", "ppo"]:
        table = pd.DataFrame(rows | (lilo if config.startswith("lilo") else {}))
        tables[config] = table.assign(seed=1).rename_axis("iteration")
    panels, real_grid = {}, lc.grid

    def grid(plt, curves, xs, path, *args, **kwargs):  # the real one, its panels kept by figure
        panels[path.name] = real_grid(plt, curves, xs, path, *args, **kwargs)
        return panels[path.name]

    monkeypatch.setattr(lc, "grid", grid)
    lc.plot(tables, tmp_path)
    accuracy = panels["test_accuracy.png"]
    assert accuracy.shape == (2, 2) and [ax.get_title() for ax in accuracy[0]] == ["PPO", "GRPO"]
    assert [ax.get_xlabel() for ax in accuracy[:, 1]] == ["iteration", "generated tokens (thousands)"]
    grpo = accuracy[1, 1].get_lines()
    assert [(line.get_color(), line.get_linestyle()) for line in grpo] == [s[:2] for s in lc.ROLES.values()]
    assert list(grpo[1].get_xdata()) == [0, 0.2]  # LILO's thousands of generated tokens at its evaluations
    assert len(accuracy[1, 0].get_lines()) == 1  # PPO: its base alone
    zero = panels["zero_variance_share.png"]
    assert zero.shape == (1, 2) and [line.get_linestyle() for line in zero[0, 1].get_lines()].count(":") == 1
    for name in ["test_accuracy.png", "test_accuracy_budgets.png", "zero_variance_share.png", "learnability.png"]:
        assert (tmp_path / name).exists()
