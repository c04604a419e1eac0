"""Run a trainer under torchrun exactly as a user would, then record what each rank ended with.

    torchrun --nproc_per_node 2 tests/distributed/run_trainer.py OUT_DIR SCRIPT [trainer flags...]

The script runs as `__main__`; afterwards every rank writes OUT_DIR/rank<R>.json with per-tensor
sums of its full (gathered) policy weights, a greedy continuation of a fixed prompt by its vLLM
engine with the engine's log-probs, and the policy's log-probs of the same tokens (in the trainer's precision).
"""

import json
import runpy
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from vllm import SamplingParams
from vllm.inputs import TokensPrompt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from common.distributed import full_tensors  # noqa: E402

PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]


if __name__ == "__main__":
    out, script, flags = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sys.argv = [script, *flags]
    trainer = runpy.run_path(str(ROOT / script), run_name="__main__")
    policy = [t.double().sum().item() for _, t in full_tensors(trainer["policy"])]
    sample = (
        trainer["llm"]
        .generate(
            [TokensPrompt(prompt_token_ids=PROMPT)],
            SamplingParams(temperature=0, max_tokens=8, logprobs=0),
            use_tqdm=False,
        )[0]
        .outputs[0]
    )
    tokens = list(sample.token_ids)
    engine_logprobs = [lp[t].logprob for t, lp in zip(tokens, sample.logprobs)]
    # a collective forward pass under FSDP (every rank runs it on the same input), in the trainer's precision
    with torch.no_grad(), trainer["autocast"]:
        logits = trainer["policy"](input_ids=torch.tensor([PROMPT + tokens])).logits[0, len(PROMPT) - 1 : -1].float()
    policy_logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1).tolist()
    record = {
        "iteration": trainer["iteration"],
        "questions": [q["question"] for q in trainer["questions"]],
        "last_minibatch": trainer["minibatch"].tolist(),
        "policy": policy,
        "tokens": tokens,
        "engine_logprobs": engine_logprobs,
        "policy_logprobs": policy_logprobs,
    }
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(record))
