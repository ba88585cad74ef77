"""kdbench's builtin fusion strategies, one file each (imported only when used)."""

from kdbench import hookimpl

FUSIONS = [
    ("concat", "concat:ConcatFusion", "Early fusion: concatenate the modality embeddings"),
    ("late", "late:LateFusion", "Late fusion: average per-modality classifiers' logits (optionally learned weights)"),
    ("sum", "sum:SumFusion", "Project every modality embedding to one width and sum them"),
    ("gated", "gated:GatedFusion", "Gated multimodal unit, Arevalo et al. ICLR-W 2017"),
    ("attention", "attention:AttentionFusion", "Self-attention over modality tokens (transformer encoder layer)"),
    ("tensor", "tensor:TensorFusion", "Tensor fusion network, Zadeh et al. EMNLP 2017"),
    ("lowrank", "lowrank:LowRankFusion", "Low-rank multimodal fusion, Liu et al. ACL 2018"),
    ("film", "film:FiLMFusion", "FiLM, Perez et al. AAAI 2018: one modality conditions the others"),
]


@hookimpl
def kdbench_register_fusions(registry):
    for name, target, description in FUSIONS:
        registry.add(name, f"kdbench_fusions.{target}", description=description, version=1)
