"""kdbench's builtin fusion strategies."""

from kdbench import hookimpl


@hookimpl
def kdbench_register_fusions(registry):
    registry.add("concat", "kdbench_fusions.concat:ConcatFusion", description="Early fusion: concatenate the modality embeddings", version=1)
    registry.add("late", "kdbench_fusions.late:LateFusion", description="Late fusion: average per-modality classifiers' logits (optionally learned weights)", version=1)
