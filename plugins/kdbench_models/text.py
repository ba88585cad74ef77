"""Text encoders trained from scratch on a dataset's own token ids (id 0 is padding).

- ``bow``: a bag of tokens, the mean of the token embeddings (``nn.EmbeddingBag``,
  padding excluded) followed by a Linear-ReLU layer: the fastText-style baseline of
  Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification".
- ``transformer``: a small BERT (Devlin et al. 2019) built from a ``transformers``
  ``BertConfig``, randomly initialised: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import EncoderOutput, ModalitySpec


def _check_text(name: str, modality: str, spec: ModalitySpec) -> int:
    """The vocabulary size of a token-id modality, or IncompatibleError."""
    if spec.kind != "text" or len(spec.shape) != 1:
        raise IncompatibleError(
            f"{name} cannot encode modality '{modality}' (kind {spec.kind}, shape {spec.shape}): "
            "it reads token ids of kind text, shape (L,)"
        )
    if not spec.vocab_size:
        raise IncompatibleError(f"{name} needs the vocab_size of text modality '{modality}', and its dataset gives none")
    return int(spec.vocab_size)


class BagOfWords:
    """Bag of tokens: EmbeddingBag (mean) and a linear layer.

    The embedding is ``ReLU(W mean_{i: id_i != 0} E[id_i] + b)``. A text of padding
    only embeds to the zero vector before the linear layer. Taps ``embed`` (the mean
    token embedding, (B, dim)) and ``layer1`` (the embedding, (B, dim)).

    Args:
        dim: token embedding size and embedding size.
    """

    def __init__(self, dim: int = 64) -> None:
        if dim < 1:
            raise UserError(f"bow needs dim >= 1, got {dim}")
        self.dim = dim

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        return BagOfWordsEncoder(_check_text("bow", modality, spec), self.dim)


class BagOfWordsEncoder(nn.Module):
    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        self.layer1 = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.embed_dim = dim

    def forward(self, ids: torch.Tensor) -> EncoderOutput:
        bag = self.bag(ids.long())  # each row of a 2-D input is one bag
        h = self.layer1(bag)
        return EncoderOutput(h, {"embed": bag, "layer1": h})


class SmallTransformer:
    """A small BERT built from a config (transformers), no download.

    ``BertModel(BertConfig(...))`` with ``max_position_embeddings`` equal to the
    modality's length L, the dataset's vocabulary (pad id 0; the attention mask is
    ``ids != 0``) and one token type. The embedding pools the last hidden state:
    ``mean`` (default) averages the non-padding positions, as sentence-transformers
    does, which trains more readily from scratch than a [CLS] the data never marked;
    ``first`` takes position 0 (the [CLS] when the dataset puts one there).

    Taps ``layer1`` .. ``layer{layers}``: the hidden states after each Transformer
    layer, transposed to (B, hidden, L) so that the channel axis is the hidden size,
    the (B, C, L) layout the feature losses read. Padding positions are included.

    Args:
        hidden: hidden size.
        layers: Transformer layers.
        heads: attention heads (must divide ``hidden``).
        intermediate: feed-forward size.
        dropout: dropout on hidden states and attention probabilities (BERT's 0.1).
        pooling: ``mean`` or ``first``.
    """

    def __init__(self, hidden: int = 64, layers: int = 2, heads: int = 2, intermediate: int = 128,
                 dropout: float = 0.1, pooling: str = "mean") -> None:
        if min(hidden, layers, heads, intermediate) < 1:
            raise UserError("transformer needs hidden, layers, heads and intermediate >= 1")
        if hidden % heads:
            raise UserError(f"transformer: heads ({heads}) must divide hidden ({hidden})")
        if pooling not in ("mean", "first"):
            raise UserError(f"transformer: pooling must be 'mean' or 'first', got {pooling!r}")
        self.hidden, self.layers, self.heads, self.intermediate = hidden, layers, heads, intermediate
        self.dropout, self.pooling = dropout, pooling

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        vocab_size = _check_text("transformer", modality, spec)
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size, hidden_size=self.hidden, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, intermediate_size=self.intermediate,
            max_position_embeddings=spec.shape[0], type_vocab_size=1, pad_token_id=0,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
        )
        return SmallTransformerEncoder(BertModel(config, add_pooling_layer=False), self.pooling)


def pool_hidden(last: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (B, L, H) hidden states to (B, H): the masked mean or the first position."""
    if pooling in ("first", "cls"):
        return last[:, 0]
    m = mask.unsqueeze(-1).to(last.dtype)
    return (last * m).sum(1) / m.sum(1).clamp(min=1.0)  # an all-padding text pools to 0


class SmallTransformerEncoder(nn.Module):
    def __init__(self, bert: nn.Module, pooling: str) -> None:
        super().__init__()
        self.bert = bert
        self.pooling = pooling
        self.embed_dim = bert.config.hidden_size

    def forward(self, ids: torch.Tensor) -> EncoderOutput:
        ids = ids.long()
        mask = (ids != 0).long()
        out = self.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        features = {f"layer{i}": h.transpose(1, 2) for i, h in enumerate(out.hidden_states[1:], 1)}
        return EncoderOutput(pool_hidden(out.last_hidden_state, mask, self.pooling), features)
