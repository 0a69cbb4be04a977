"""Model hyperparameters: one transformer whose switches cover crammed BERT, MosaicBERT, original BERT, ModernBERT
and GPT/Llama-style decoders."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.errors import UserError
from composer_bert.objectives import DEFAULT_OBJECTIVE, OBJECTIVES, objective
from composer_bert.schema import bounded, choice, key_error, positive, probability

# The shape fields every transformers config names alike: ours -> theirs (hf/llama.py, hf/modernbert.py build on it).
HF_SHAPE_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "max_position_embeddings": "max_position_embeddings",
    "tie_embeddings": "tie_word_embeddings",
    "init_std": "initializer_range",
}


@dataclass
class ModelConfig:
    """Defaults are Cramming's crammed BERT; `yamls/pretrain/*.yaml` switch them per recipe.

    `objective` picks the model: `mlm` is the BERT encoder with its MLM head, `causal` the same blocks with
    causal self-attention and a next-token LM head over every position (a GPT). A causal model has no token
    types (`type_vocab_size` must be 0, one error line otherwise) and never predicts sparsely
    (`sparse_prediction` applies to the MLM head only and is ignored); its LM head is the MLM head's class, so
    `head_transform`, `decoder_bias` and `tie_embeddings` mean the same for both (GPT-2: no transform, no
    bias, tied).

    `intermediate_size` is the width the feed-forward's output projection reads, as in MosaicBERT: a GLU
    (geglu, swiglu) projects to twice that and halves it again. Cramming's crammed BERT (its `intermed_size`
    3072 with GLU) is therefore intermediate_size 1536 here. LayerNorm biases follow `linear_bias`.

    ModernBERT's alternating attention: layer i attends globally when i % global_attn_every_n_layers == 0 and
    otherwise to the keys within local_attention / 2 positions either side (a band of local_attention + 1),
    each kind with its own rotary base (rope_theta, local_rope_theta). `first_attn_norm: false` drops the norm
    before layer 0's attention, whose input is the embedding norm's output already.
    """

    objective: str = choice(DEFAULT_OBJECTIVE, list(OBJECTIVES))  # an entry of objectives.py's table
    vocab_size: int | None = positive(32768)  # None: take it from the shards' manifest
    hidden_size: int = positive(768)
    num_layers: int = positive(16)
    num_heads: int = positive(12)
    intermediate_size: int = positive(1536)
    max_position_embeddings: int = positive(512)
    type_vocab_size: int = bounded(2, "0 (off) or more", ge=0)  # 0: no token type embeddings (token_type_ids are then ignored)
    pad_token_id: int = bounded(0, "a token id >= 0", ge=0)
    norm_placement: str = choice("pre", ["pre", "post"])
    final_norm: bool = True  # a norm after the last block; pre-norm models need it
    norm_type: str = choice("layernorm", ["layernorm", "rmsnorm"])
    norm_eps: float = positive(1e-12)
    embedding_norm: bool = True
    ffn_type: str = choice("geglu", ["gelu", "geglu", "swiglu"])
    qkv_bias: bool = False
    # RMSNorm of each head's queries and keys (a learned scale of head_dim) before rotary and the dot product, as
    # in the modded-nanogpt speedrun, OLMo 2 and Qwen3: bounded attention logits at high learning rates
    qk_norm: bool = False
    linear_bias: bool = False
    decoder_bias: bool = True
    position_embedding: str = choice("sinusoidal", ["learned", "sinusoidal", "rotary", "alibi"])
    rope_theta: float = positive(10000.0, "a positive rotary base such as 10000")  # of global layers
    # 1: every layer global. ModernBERT: 3 (layers 0, 3, 6, ... global, the others local)
    global_attn_every_n_layers: int = bounded(1, "a layer period >= 1 (1: every layer global)", ge=1)
    local_attention: int = bounded(128, "an even window >= 2 tokens such as 128", ge=2)  # local layers' band width
    local_rope_theta: float = positive(10000.0, "a positive rotary base such as 10000")  # of local layers
    first_attn_norm: bool = True
    tie_embeddings: bool = True
    # embedding/decoder rows rounded up to a multiple of this, so the decoder matmul is aligned
    pad_vocab_multiple: int = bounded(64, "a multiple >= 1", ge=1)
    sparse_prediction: bool = True  # the MLM head runs only on masked positions (mlm only; causal ignores it)
    head_transform: bool = True  # BERT's dense + GELU + norm before the decoder
    # GLUE classifiers on [CLS]: BERT's pooler (dense with bias, tanh) or ModernBERT's head (dense, GELU, norm;
    # biases follow linear_bias), each followed by dropout and the linear classifier
    classifier_head: str = choice("pooler", ["pooler", "modernbert"])
    init_std: float = positive(0.02, "a positive standard deviation such as 0.02")
    embedding_dropout: float = probability(0.0)
    hidden_dropout: float = probability(0.0)
    attention_dropout: float = probability(0.0)
    classifier_dropout: float = probability(0.1)
    # recompute each block's activations in the backward pass (torch.utils.checkpoint, per block): less memory,
    # about one more forward of compute; same gradients
    activation_checkpointing: bool = False
    # hf:DIR: a fresh run starts from this transformers BERT's weights (a causal model: a LlamaForCausalLM's,
    # hf/llama.py) (not on resume); the keys above must match its config. Start-up only: pretraining drops it from the config its checkpoints carry.
    init_from: str | None = None

    def check(self) -> None:
        """Shapes no model can be built from (run by `schema.validate` after each key's own range)."""
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"config key 'model.num_heads' is {self.num_heads}, but model.hidden_size {self.hidden_size} is not "
                f"divisible by it; pick a divisor (e.g. {max(self.hidden_size // 64, 1)} heads of 64)"
            )
        if self.position_embedding == "rotary" and self.head_dim % 2:
            raise key_error(
                "model.num_heads", self.num_heads, f"a head count that gives rotary an even head dimension (now {self.head_dim})"
            )
        if self.has_local_layers:
            if self.local_attention % 2:
                raise key_error("model.local_attention", self.local_attention, "an even window (keys within half of it on each side)")
            if self.position_embedding == "alibi":
                raise key_error("model.position_embedding", "alibi", "rotary, learned or sinusoidal with local attention layers")
            if objective(self.objective).causal_attention:
                raise key_error(
                    "model.global_attn_every_n_layers", self.global_attn_every_n_layers,
                    f"1 for a {self.objective} model (local attention layers are for encoders here)",
                )  # fmt: skip
        if not objective(self.objective).token_types and self.type_vocab_size:
            raise key_error("model.type_vocab_size", self.type_vocab_size, f"0 for a {self.objective} model (it has no token types)")
        if self.vocab_size is not None and self.pad_token_id >= self.vocab_size:
            raise key_error("model.pad_token_id", self.pad_token_id, f"an id below model.vocab_size ({self.vocab_size})")

    @property
    def has_local_layers(self) -> bool:
        return self.global_attn_every_n_layers > 1 and self.num_layers > 1

    def is_global_layer(self, index: int) -> bool:
        return index % self.global_attn_every_n_layers == 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.pad_vocab_multiple) * self.pad_vocab_multiple
