"""Fixtures of the generation tests: a tiny random chat causal LM built offline."""

from __future__ import annotations

from pathlib import Path

import pytest

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory, tiny_genfuser_dir: Path) -> Path:
    """A tiny random LlamaForCausalLM with a ChatML chat template (tokenizer of the tiny T5)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_causal")
    tokenizer = AutoTokenizer.from_pretrained(tiny_genfuser_dir)
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Never end or emit special tokens, so answers are non-empty text of max_new_tokens.
        silenced = [*tokenizer.all_special_ids, tokenizer.convert_tokens_to_ids("▁")]
        model.lm_head.weight[silenced] = -1.0
        for name, param in model.named_parameters():
            if "norm" not in name and "lm_head" not in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out
