from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.model import DEFAULT_MODEL, resolve_model


def test_default_model_is_a_loadable_chat_model():
    folder = Path(resolve_model(None))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert model.config.model_type == "llama" and 100e6 < model.num_parameters() < 200e6
    assert tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer  # a real, working model, not random weights


def test_default_model_is_materialised_once_into_the_cache(tmp_path, monkeypatch, capsys):
    default = resolve_model(None)  # the usual cache, to compare with
    monkeypatch.setenv("LLM_MATH_RL_CACHE", str(tmp_path))
    folder = Path(resolve_model(None))
    assert folder == tmp_path / DEFAULT_MODEL
    assert "converting" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL]  # no temporary folder left behind
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(None) == str(folder)
    assert "converting" not in capsys.readouterr().out
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    fresh, cached = load_file(folder / "model.safetensors"), load_file(Path(default) / "model.safetensors")
    assert fresh.keys() == cached.keys() and all(torch.equal(fresh[k], cached[k]) for k in fresh)
    assert {t.dtype for t in fresh.values()} == {torch.bfloat16}


def test_model_folder_is_passed_through(tiny_model):
    assert resolve_model(tiny_model) == tiny_model


@pytest.mark.parametrize("missing", ["/nonexistent/model", "./no-such-model", "~/no-such-model", "a/b/c"])
def test_missing_model_folder_exits_clearly(missing):
    with pytest.raises(SystemExit, match=rf"^error: --model {missing}: no such folder"):
        resolve_model(missing)


def test_folder_without_config_exits_clearly(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"^error: --model .*: the folder has no config.json"):
        resolve_model(str(tmp_path))


def resolve_in_subprocess(model: str, **env: str):
    """resolve_model in a fresh process: huggingface_hub reads its settings (offline mode, cache) at import."""
    import os
    import subprocess
    import sys

    code = "import sys; from common.model import resolve_model; print(resolve_model(sys.argv[1]))"
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code, model], cwd=root, env=environment, capture_output=True, text=True
    )


def test_hub_model_in_the_cache_resolves_offline_to_its_snapshot(tiny_model, tmp_path):
    """A hub id resolves to its snapshot folder in the Hugging Face cache, which transformers and vLLM both read."""
    import shutil

    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "0123abc"
    shutil.copytree(tiny_model, snapshot)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("0123abc")
    result = resolve_in_subprocess("org/tiny", HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(snapshot)


@pytest.mark.parametrize("offline", ["1", "0"])
def test_unreachable_hub_is_one_error_line_with_a_hint(offline, tmp_path):
    # offline "0": a real look-up, which fails here (no hub); an endpoint on a closed local port fails fast anywhere
    env = {"HF_HUB_OFFLINE": offline, "HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = resolve_in_subprocess("org/not-cached", **env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --model org/not-cached: the Hugging Face hub cannot be reached")
    assert "hint: " in line and "--local-dir" in line


@pytest.mark.parametrize("remove, message", [("model.safetensors", "no weights"), ("tokenizer*", "no tokenizer")])
def test_folder_without_weights_or_tokenizer_exits_clearly(remove, message, tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    for path in folder.glob(remove):
        path.unlink()
    with pytest.raises(SystemExit, match=rf"^error: --model {folder}: {message}"):
        resolve_model(str(folder))
