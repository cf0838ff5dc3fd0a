"""A minimal BERT encoder in plain PyTorch, for the offline default text encoder (all-MiniLM-L6-v2).

Loading the packaged MiniLM through transformers costs several seconds of imports on a CPU; this module
reads the same ``config.json`` + ``model.safetensors`` + ``tokenizer.json`` folder with safetensors and
the ``tokenizers`` library and computes the same token-level hidden states (tested against transformers'
``BertModel``), so ``moviegen generate`` starts fast. Post-LN BERT: embeddings (word + position + token
type) → LayerNorm → N × [self-attention → add & LayerNorm → GELU MLP → add & LayerNorm].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.errors import MovieGenError
from moviegen.pretrained import load_safetensors


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        data = json.loads(path.read_text())
        if data.get("model_type", "bert") != "bert" or data.get("hidden_act", "gelu") != "gelu":
            raise MovieGenError(f"{path}: not a GELU BERT model")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attention_out = nn.Linear(d, d)
        self.attention_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.intermediate = nn.Linear(d, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, d)
        self.output_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (
            f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = self.attention_norm(x + self.attention_out(y.transpose(1, 2).reshape(b, n, d)))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertEncoder(nn.Module):
    """Token-level BERT hidden states; ``forward(ids, attention_mask) -> (B, L, hidden)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.embedding_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings.weight[0]
        )
        x = self.embedding_norm(x)
        mask = attention_mask.bool()
        for layer in self.layers:
            x = layer(x, mask)
        return x

    @classmethod
    def from_folder(cls, folder: Path) -> BertEncoder:
        model = cls(BertConfig.from_file(folder / "config.json"))
        state = load_safetensors(folder / "model.safetensors")
        state = {_rename(k): v for k, v in state.items() if k.startswith(("embeddings.", "encoder."))}
        state.pop("position_ids", None)
        own = model.state_dict()
        missing, unexpected = set(own) - set(state), set(state) - set(own)
        if missing or unexpected:
            raise MovieGenError(f"{folder}: BERT weights do not match ({sorted(missing | unexpected)[:3]})")
        model.load_state_dict(state)
        return model


_RENAMES = (
    ("embeddings.LayerNorm.", "embedding_norm."),
    ("embeddings.", ""),
    ("encoder.layer.", "layers."),
    ("attention.self.", ""),
    ("attention.output.dense.", "attention_out."),
    ("attention.output.LayerNorm.", "attention_norm."),
    ("intermediate.dense.", "intermediate."),
    ("output.dense.", "output."),
    ("output.LayerNorm.", "output_norm."),
)


def _rename(key: str) -> str:
    """transformers ``BertModel`` parameter name → this module's."""
    for old, new in _RENAMES:
        key = key.replace(old, new, 1)
    return key


class WordPieceTokenizer:
    """The folder's ``tokenizer.json`` through the ``tokenizers`` library, padded to the longest prompt."""

    def __init__(self, folder: Path, max_length: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")

    def count(self, text: str) -> int:
        """Tokens of ``text`` (special tokens included) before truncation."""
        return len(self.counter.encode(text).ids)

    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask
