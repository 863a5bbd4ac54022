"""Tiny Hugging Face language models built from configs (no download): GPT-2, whose linear
layers are ``transformers``' ``Conv1D`` (weight in × out) and whose head is tied to the token
embedding, and Llama (``nn.Linear``, untied head); a user's LightningModule holding one, and
next-token data it can learn (each token is the previous one plus 1, modulo the vocabulary).

Import only after ``pytest.importorskip("transformers")``."""

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

VOCAB = 64
LENGTH = 16


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=32,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return LlamaForCausalLM(config)


MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}

GPT2_LAYERS = [
    f"model.transformer.h.{i}.{name}"
    for i in range(2)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
]
LLAMA_LAYERS = [
    f"model.model.layers.{i}.{name}"
    for i in range(2)
    for name in (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )  # fmt: skip
] + ["model.lm_head"]
PRUNABLE = {"gpt2": GPT2_LAYERS, "llama": LLAMA_LAYERS}


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class CausalLM(L.LightningModule):
    """The user's module: a transformers model, logits from ``forward``, one SGD group."""

    def __init__(self, model, lr: float = 0.1, weight_decay: float = 1e-3):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log("train/acc", acc, on_step=False, on_epoch=True)
        return lm_loss(logits, y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay
        )


def token_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    sequences = (start + torch.arange(LENGTH + 1)) % VOCAB
    return TensorDataset(sequences[:, :-1], sequences[:, 1:])


def token_loaders(batch_size: int = 16):
    data = token_data()
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=64)


class TinyCausalLM(CausalLM):
    """A tiny model rebuilt from its saved hyper-parameters and class path, as the ``sparsify``
    CLI saves them, so that ``sparsify export`` can rebuild it from a checkpoint."""

    def __init__(self, name: str = "gpt2", lr: float = 0.1, weight_decay: float = 1e-3):
        super().__init__(MODELS[name](), lr, weight_decay)
        self.save_hyperparameters()
        self.hparams["_class_path"] = f"{__name__}.{type(self).__name__}"
