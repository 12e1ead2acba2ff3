"""Tiny random models of each supported family, for fast tests (no downloads, seconds to build)."""

from __future__ import annotations

from typing import Any


def tiny_model(family: str = "llama", *, seed: int = 0, layers: int = 2, vocab: int = 128, **overrides: Any):
    """A small random HF model of `family` (llama, qwen2, qwen3, mistral, gpt2, bert) in eval mode."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab)
    if family in ("llama", "qwen2", "qwen3", "mistral"):
        config_cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config,
                      "mistral": tf.MistralConfig}[family]
        options = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
        config = config_cls(**{**options, **common, **overrides})
        model = tf.AutoModelForCausalLM.from_config(config)
    elif family == "gpt2":
        config = tf.GPT2Config(n_embd=64, n_layer=layers, n_head=4, n_positions=512, **common, **overrides)
        model = tf.GPT2LMHeadModel(config)
    elif family == "bert":
        config = tf.BertConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                               intermediate_size=128, max_position_embeddings=512, **common, **overrides)
        model = tf.BertModel(config)
    else:
        raise ValueError(f"Unknown family '{family}'. Valid choices: llama, qwen2, qwen3, mistral, gpt2, bert")
    return model.eval()


def tiny_loaded(family: str = "llama", **kwargs: Any):
    """A tiny random model wrapped as prunekit.models.LoadedModel (no tokenizer)."""
    from .models import load

    return load(tiny_model(family, **kwargs))


class CharTokenizer:
    """A byte-level stand-in tokenizer for tests: one id per UTF-8 byte modulo the vocabulary."""

    def __init__(self, vocab: int = 128):
        self.vocab = vocab

    def __call__(self, text: str, add_special_tokens: bool = False, return_attention_mask: bool = False, **_: Any):
        return {"input_ids": [b % self.vocab for b in text.encode("utf-8")]}


def layer_inputs(model: Any, module: Any, input_ids: Any):
    """(tokens, in) inputs that `module` receives during one no-grad forward of `model` on `input_ids`."""
    import torch

    seen = []
    handle = module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    try:
        with torch.no_grad():
            model(input_ids=input_ids)
    finally:
        handle.remove()
    return torch.cat(seen)


def tiny_resnet(*, widths: tuple[int, ...] = (8, 16), num_classes: int = 10, seed: int = 0):
    """A torchvision-style ResNet (stem conv-BN-ReLU, one BasicBlock per stage with a 1x1 conv-BN downsample where
    the width or stride changes, global average pool, Linear head) with random weights and BatchNorm statistics,
    in eval mode; rebuilt with the same keyword arguments it is the same network (`prunekit.save(..., kwargs=)`)."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.downsample = None if cin == cout and stride == 1 else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    for i, width in enumerate(widths):
        layers.append(BasicBlock(widths[max(i - 1, 0)], width, 1 if i == 0 else 2))
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return model.eval()
