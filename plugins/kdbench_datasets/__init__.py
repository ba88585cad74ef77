"""kdbench's builtin datasets. Implementations are imported only when used."""

from kdbench import hookimpl


@hookimpl
def kdbench_register_datasets(registry):
    registry.add(
        "synthetic",
        "kdbench_datasets.synthetic:Synthetic",
        description="Seeded multimodal classes (image-, audio- and vector-like) with per-modality informativeness",
        version=1,
    )
