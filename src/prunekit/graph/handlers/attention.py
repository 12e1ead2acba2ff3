"""Attention handlers: heads are the units, so q/k/v rows and o columns go a whole head at a time.

Grouped-query attention (Ainslie et al. 2023, "GQA"): query head h reads key/value head h // g with
g = num_q / num_kv. Two head modes keep that layout valid:
- "kv": a unit is one KV head with its g query heads (k, v rows of the head; q rows and o columns of
  its query group), so g stays fixed and KV heads drop;
- "q": a unit is one query head, and every KV group must lose the same number of query heads, so g
  shrinks evenly and all KV heads stay.
With plain multi-head attention (g = 1) both modes prune whole heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedOperation
from ..handler import LayerHandler


def _tokens(x: torch.Tensor) -> tuple[int, int]:
    """(number of token positions, sequence length) of a (..., T, C) activation."""
    seq = x.shape[-2] if x.ndim >= 2 else 1
    return x.numel() // x.shape[-1], seq


class GQAAttentionHandler(LayerHandler):
    """Llama / Qwen2 / Mistral / Qwen3 attention: q_proj, k_proj, v_proj, o_proj and `head_dim`."""

    tag = "heads"

    def get_out_channels(self, module: nn.Module) -> int:
        return module.o_proj.weight.shape[0]

    def get_in_channels(self, module: nn.Module) -> int:
        return module.q_proj.weight.shape[1]

    @staticmethod
    def layout(module: nn.Module) -> tuple[int, int, int]:
        """(num query heads, num KV heads, head_dim) from the projection shapes."""
        hd = module.head_dim
        return module.q_proj.weight.shape[0] // hd, module.k_proj.weight.shape[0] // hd, hd

    def sync(self, module: nn.Module) -> None:
        nq, nkv, _ = self.layout(module)
        module.num_key_value_groups = nq // nkv if nkv else 0
        module.num_heads, module.num_key_value_heads = nq, nkv  # per-layer counts for readers (MAC counters)

    def trace(self, tracer, name: str, module: nn.Module, inputs: list, output: Any) -> None:
        x = tracer.first_tensor(inputs)
        nq, nkv, hd = self.layout(module)
        g = nq // nkv
        q, k, v, o = (f"{name}.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
        in_space = tracer.channel_space(x, -1, f"{name}:in", self.get_in_channels(module))
        for proj in (q, k, v):
            tracer.bind(proj, "in", in_space)
        q_head = torch.arange(nq * hd) // hd  # (nq*hd,) query head of each q row / o column
        mode = tracer.options.get("head_mode", "kv")
        if mode == "kv":
            heads = tracer.new_space(f"{name}:kv_heads", nkv, tag="heads")
            kv_head = torch.arange(nkv * hd) // hd
            tracer.bind(k, "out", heads, kv_head)
            tracer.bind(v, "out", heads, kv_head)
            tracer.bind(q, "out", heads, q_head // g)
            tracer.bind(o, "in", heads, q_head // g)
        elif mode == "q":
            heads = tracer.new_space(f"{name}:q_heads", nq, tag="heads")
            tracer.bind(q, "out", heads, q_head)
            tracer.bind(o, "in", heads, q_head)
            tracer.equal_blocks(heads, [list(range(j * g, (j + 1) * g)) for j in range(nkv)])
        else:
            raise ValueError(f"Unknown head_mode '{mode}'. Valid choices: kv, q")
        out_space = tracer.new_space(f"{o}:out", self.get_out_channels(module))
        tracer.bind(o, "out", out_space)
        tracer.set_output(tracer.first_tensor(output), x, -1, out_space)
        tokens, seq = _tokens(x)
        hidden = self.get_in_channels(module)
        for proj, n_out in ((q, nq * hd), (k, nkv * hd), (v, nkv * hd)):
            tracer.add_macs(tokens * hidden * n_out, [(proj, "in"), (proj, "out")])
        tracer.add_macs(tokens * nq * hd * self.get_out_channels(module), [(o, "in"), (o, "out")])
        tracer.add_macs(2 * tokens * seq * nq * hd, [(q, "out")])  # QK^T and AV, dense (no causal saving)


class GPT2AttentionHandler(LayerHandler):
    """GPT-2 attention: fused c_attn (Conv1D, (in, 3*split)) and c_proj; `split_size`, `num_heads`."""

    tag = "heads"

    def get_out_channels(self, module: nn.Module) -> int:
        return module.c_proj.weight.shape[1]

    def get_in_channels(self, module: nn.Module) -> int:
        return module.c_attn.weight.shape[0]

    def sync(self, module: nn.Module) -> None:
        heads = module.c_proj.weight.shape[0] // module.head_dim
        module.num_heads = heads
        module.split_size = heads * module.head_dim
        module.embed_dim = module.c_attn.weight.shape[0]

    def trace(self, tracer, name: str, module: nn.Module, inputs: list, output: Any) -> None:
        if getattr(module, "is_cross_attention", False):
            raise UnsupportedOperation(f"'{name}' is GPT-2 cross-attention; register a handler for it.")
        x = tracer.first_tensor(inputs)
        hd, split = module.head_dim, module.c_attn.weight.shape[1] // 3
        heads = tracer.new_space(f"{name}:heads", split // hd, tag="heads")
        c_attn, c_proj = f"{name}.c_attn", f"{name}.c_proj"
        tracer.bind(c_attn, "in", tracer.channel_space(x, -1, f"{name}:in", self.get_in_channels(module)))
        tracer.bind(c_attn, "out", heads, (torch.arange(3 * split) % split) // hd)
        tracer.bind(c_proj, "in", heads, torch.arange(split) // hd)
        out_space = tracer.new_space(f"{c_proj}:out", self.get_out_channels(module))
        tracer.bind(c_proj, "out", out_space)
        tracer.set_output(tracer.first_tensor(output), x, -1, out_space)
        tokens, seq = _tokens(x)
        tracer.add_macs(tokens * self.get_in_channels(module) * 3 * split, [(c_attn, "in"), (c_attn, "out")])
        tracer.add_macs(tokens * split * self.get_out_channels(module), [(c_proj, "in"), (c_proj, "out")])
        tracer.add_macs(2 * tokens * seq * split, [(c_attn, "out")])


class BertSelfAttentionHandler(LayerHandler):
    """BERT self-attention (query, key, value; the output projection is the next module): its output
    is H*hd features where the hd features of a head are one unit."""

    tag = "heads"

    def get_out_channels(self, module: nn.Module) -> int:
        return module.query.weight.shape[0]

    def get_in_channels(self, module: nn.Module) -> int:
        return module.query.weight.shape[1]

    def sync(self, module: nn.Module) -> None:
        heads = module.query.weight.shape[0] // module.attention_head_size
        module.num_attention_heads = heads
        module.all_head_size = heads * module.attention_head_size

    def trace(self, tracer, name: str, module: nn.Module, inputs: list, output: Any) -> None:
        x = tracer.first_tensor(inputs)
        hd, width = module.attention_head_size, self.get_out_channels(module)
        in_space = tracer.channel_space(x, -1, f"{name}:in", self.get_in_channels(module))
        heads = tracer.new_space(f"{name}:heads", width, tag="heads")
        tracer.couple(heads, heads, None, (torch.arange(width) // hd) * hd)  # a head's features go together
        for proj in ("query", "key", "value"):
            tracer.bind(f"{name}.{proj}", "in", in_space)
            tracer.bind(f"{name}.{proj}", "out", heads)
        tracer.set_output(tracer.first_tensor(output), x, -1, heads)
        tokens, seq = _tokens(x)
        q = f"{name}.query"
        for proj in ("query", "key", "value"):
            tracer.add_macs(tokens * self.get_in_channels(module) * width,
                            [(f"{name}.{proj}", "in"), (f"{name}.{proj}", "out")])
        tracer.add_macs(2 * tokens * seq * width, [(q, "out")])


GQA_ATTENTIONS = [f"transformers.models.{m}.modeling_{m}.{c}Attention" for m, c in
                  [("llama", "Llama"), ("qwen2", "Qwen2"), ("mistral", "Mistral"), ("qwen3", "Qwen3")]]


def register_builtin(register) -> None:
    """Register the handlers of this file with `register(key, handler)`."""
    for key in GQA_ATTENTIONS:
        register(key, GQAAttentionHandler())
    register("transformers.models.gpt2.modeling_gpt2.GPT2Attention", GPT2AttentionHandler())
    register("transformers.models.bert.modeling_bert.BertSelfAttention", BertSelfAttentionHandler())
    register("transformers.models.roberta.modeling_roberta.RobertaSelfAttention", BertSelfAttentionHandler())
