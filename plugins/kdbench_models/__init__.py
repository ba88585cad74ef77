"""kdbench's builtin model families (teachers and students alike)."""

from kdbench import hookimpl


@hookimpl
def kdbench_register_models(registry):
    registry.add("mlp", "kdbench_models.mlp:MLP", description="Multi-layer perceptron on the flattened modality", version=1)
    registry.add(
        "cnn",
        "kdbench_models.cnn:CNN",
        description="Conv-BN-ReLU stages (2-D for images, 1-D for audio, sequences and vectors)",
        version=1,
    )
