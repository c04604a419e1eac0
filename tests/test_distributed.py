"""torchrun on this CPU (gloo): every trainer runs with 2 ranks, each with its own vLLM engine,
the policy sharded with FSDP2; an update split over 2 ranks equals the one-process update."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_FLAGS, only_run_dir, read_scalars, run_script

PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]  # as in tests/distributed/run_trainer.py


def torchrun(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ...` from the repo root, one thread per rank (2 cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """Each trainer for one iteration under torchrun with 2 ranks: (run folder, per-rank records, process). In fp32
    unless asked: the checks compare each engine's log-probs with the policy's exactly."""

    done = {}

    def run(script, precision="fp32"):
        if (script, precision) in done:  # one run serves every test that reads it
            return done[script, precision]
        out = tmp_path_factory.mktemp(script.removesuffix(".py") + precision)
        result = torchrun(
            "tests/distributed/run_trainer.py",
            str(out),
            script,
            "--model",
            tiny_model,
            "--output-dir",
            str(out / "runs"),
            *TINY_FLAGS,
            "--num-iterations",
            "1",
            "--eval-size",
            "3",
            "--precision",
            precision,
        )
        assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
        ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
        done[script, precision] = only_run_dir(out / "runs"), ranks, result
        return done[script, precision]

    yield run
    for out in {run_dir.parents[1] for run_dir, _, _ in done.values()}:
        shutil.rmtree(out)  # checkpoints: the suite would hold gigabytes (see pyproject.toml)


# The LILO trainers share every distributed line with their base trainers (their selection runs identically on every
# rank, from the gathered scores), and GRPO its lines with PPO but the value network: one LILO file runs by default
# (the selection from gathered scores, which no base trainer has), the others with `pytest -m slow`, to keep the
# default suite short.
SLOW = ["grpo.py", "lilo_ppo.py", "lilo_vineppo.py"]


@pytest.mark.parametrize(
    "script",
    ["ppo.py", "vineppo.py", "lilo_grpo.py"] + [pytest.param(s, marks=pytest.mark.slow) for s in SLOW],
)
def test_two_ranks_train_one_iteration_and_end_with_the_same_weights(script, runs, tiny_model):
    run_dir, ranks, result = runs(script)
    assert [r["iteration"] for r in ranks] == [1, 1]
    # every rank trained on the same questions and minibatches (each engine seeds the global generators with its
    # own seed: the trainer's draws must not depend on them)
    assert ranks[0]["questions"] == ranks[1]["questions"]
    assert ranks[0]["last_minibatch"] == ranks[1]["last_minibatch"]
    assert ranks[0]["policy"] == ranks[1]["policy"]
    # both engines hold the policy: same greedy tokens, and the policy's own log-probs for them
    assert ranks[0]["tokens"] == ranks[1]["tokens"]
    for rank in ranks:
        assert rank["engine_logprobs"] == pytest.approx(rank["policy_logprobs"], abs=1e-3)
    if "vineppo" in script or "grpo" in script:
        # a random tiny model gets every reward 0: VinePPO's and GRPO's advantages are all 0 and, without weight
        # decay, their weights stay put (their training under torchrun is not shown here; the update lines are PPO's)
        return
    from transformers import AutoModelForCausalLM

    initial_model = AutoModelForCausalLM.from_pretrained(tiny_model)
    initial = [t.double().sum().item() for t in initial_model.state_dict().values()]
    assert sum(a != b for a, b in zip(initial, ranks[0]["policy"])) > len(initial) / 2  # the policy was trained
    with torch.no_grad():
        logits = initial_model(input_ids=torch.tensor([PROMPT + ranks[0]["tokens"]])).logits[0, len(PROMPT) - 1 : -1]
    initial_logprobs = (
        torch.log_softmax(logits, -1).gather(-1, torch.tensor(ranks[0]["tokens"])[:, None]).squeeze(-1).tolist()
    )
    # not the initial weights: farther from them than 3x the engine's tolerance to the policy above (LILO-PPO's one
    # iteration moves them by 0.0098 nat at most, measured)
    assert max(abs(a - b) for a, b in zip(initial_logprobs, ranks[0]["engine_logprobs"])) > 3e-3
    # rank 0 alone logs (one line per iteration, not two) and checkpoints
    assert result.stdout.count("iter 1/1 train_acc=") == 1
    assert [step for step, _ in read_scalars(run_dir)["charts/train_accuracy"]] == [1]
    saved = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint" / "policy")
    assert [t.double().sum().item() for t in saved.state_dict().values()] == pytest.approx(ranks[0]["policy"])


def test_two_ranks_train_in_bf16(runs):
    """The default precision under torchrun: bf16 autocast over FSDP2-sharded fp32 weights, bf16 engines. Both ranks
    end with the same weights and engines, which hold the policy to within the kernels' gap."""
    _, ranks, result = runs("ppo.py", "bf16")
    assert ranks[0]["policy"] == ranks[1]["policy"] and ranks[0]["tokens"] == ranks[1]["tokens"]
    for rank in ranks:
        assert rank["engine_logprobs"] == pytest.approx(rank["policy_logprobs"], abs=0.05)
    assert "iter 1/1 train_acc=" in result.stdout


def test_a_two_rank_checkpoint_resumes_in_one_process(runs, tiny_model):
    run_dir, _, _ = runs("ppo.py")
    result = run_script(
        "ppo.py",
        "--model",
        tiny_model,
        "--resume",
        str(run_dir),
        *TINY_FLAGS,
        "--precision",
        "fp32",
        "--num-iterations",
        "2",
        "--eval-size",
        "3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "iter 2/2" in result.stdout
    assert torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)["iteration"] == 2


def test_an_update_split_over_two_ranks_equals_the_one_process_update(tiny_model, tmp_path):
    one = subprocess.run(
        [sys.executable, "tests/distributed/one_update.py", tiny_model, str(tmp_path / "one.pt")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun("tests/distributed/one_update.py", tiny_model, str(tmp_path / "two.pt"))
    assert two.returncode == 0, two.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys()
    moved = max((one[name] - initial[name]).abs().max().item() for name in one)
    assert moved > 1e-3  # the update did something
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6, msg=name)


def test_a_minibatch_that_does_not_split_over_the_ranks_is_one_clear_error(tiny_model):
    result = torchrun(
        "ppo.py", "--model", tiny_model, *TINY_FLAGS, "--minibatch-size", "1", "--micro-batch-size", "1", timeout=300
    )
    assert result.returncode != 0
    assert "--minibatch-size must be a multiple of the number of processes (2)" in result.stderr
    assert 'ppo.py", line' not in result.stderr  # the trainer's own exit, not a crash (torchrun adds its own report)


def test_work_shared_between_ranks_comes_back_whole_and_in_order():
    result = torchrun("tests/distributed/sharing.py", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
