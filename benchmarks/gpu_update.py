"""The training half on a GPU: one policy update of a 1.5B-parameter model, peak memory and tokens/s, bf16 against fp32.

Run from the repository root on a machine with a CUDA GPU: python benchmarks/gpu_update.py
A randomly initialised model of Qwen2.5-1.5B's shape (no download) takes PPO policy updates as the trainers compute
them (vineppo.py / grpo.py: no value network): 64 sequences of 1024 tokens (512 of prompt, 512 of response),
micro-batches with gradient accumulation, logits only over the response, log-softmax in fp32, the clipped loss,
gradient clipping, an AdamW step over fp32 weights. --precision bf16 computes under bf16 autocast, as the trainers'
`--precision bf16` does; fp32 does not. Each precision runs a warm-up update, then the measured ones. Needs torch and
transformers only (no vLLM): the update is re-stated here in a few lines, the same operations as the trainers'.
"""

import argparse
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, Qwen2Config

# Qwen/Qwen2.5-1.5B's config.json (1.54B parameters, tied embeddings)
QWEN25_15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(QWEN25_15B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024)  # fmt: skip


def update(policy, optimizer, input_ids, prompt_length, micro_batch, autocast) -> None:
    """One optimiser step over all sequences: the clipped PPO loss summed over response tokens, accumulated."""
    optimizer.zero_grad()
    n_tokens = input_ids.shape[0] * (input_ids.shape[1] - prompt_length)
    for ids in input_ids.split(micro_batch):
        response_length = ids.shape[1] - prompt_length
        with autocast:
            logits = policy(input_ids=ids, logits_to_keep=response_length + 1).logits
        logp_all = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        logp = logp_all.gather(-1, ids[:, prompt_length:, None]).squeeze(-1)
        advantages = torch.randn_like(logp)
        ratio = torch.exp(logp - logp.detach())  # the first epoch: old log-probs are these
        loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)).sum() / n_tokens
        loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--updates", type=int, default=2, help="measured updates per precision, after a warm-up one")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same kind, to try the script out")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = Qwen2Config(**(TINY if args.tiny else QWEN25_15B))
    length = args.prompt_tokens + args.response_tokens
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}")
    results = {}
    for precision in args.precisions:
        torch.manual_seed(0)
        with device:
            policy = AutoModelForCausalLM.from_config(config)  # fp32 weights, the default
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0)
        input_ids = torch.randint(config.vocab_size, (args.sequences, length), device=device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        parameters = sum(p.numel() for p in policy.parameters())
        update(policy, optimizer, input_ids, args.prompt_tokens, args.micro_batch, autocast)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.updates):
            update(policy, optimizer, input_ids, args.prompt_tokens, args.micro_batch, autocast)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.updates
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        results[precision] = seconds
        print(
            f"{precision}: {parameters / 1e9:.2f}B parameters, {args.sequences} x {length} tokens, micro-batch "
            f"{args.micro_batch}: {seconds:.2f} s per update, {args.sequences * length / seconds:,.0f} tokens/s, "
            f"peak memory {peak:.1f} GiB",
            flush=True,
        )
        del policy, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if len(results) == 2:
        print(f"update speedup bf16 vs fp32: {results['fp32'] / results['bf16']:.2f}x")


if __name__ == "__main__":
    main()
