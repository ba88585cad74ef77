"""kdbench's builtin model families (teachers and students alike), imported only when used."""

from kdbench import hookimpl

MODELS = [
    ("mlp", "mlp:MLP", "Multi-layer perceptron on the flattened modality"),
    ("cnn", "cnn:CNN", "Conv-BN-ReLU stages (2-D for images, 1-D for audio, sequences and vectors)"),
    # the CIFAR ResNets of the KD literature (RepDistiller / CRD naming)
    ("resnet20", "cifar_resnet:ResNet20", "CIFAR ResNet-20 (He et al. 2016), 0.27M params at 32x32"),
    ("resnet56", "cifar_resnet:ResNet56", "CIFAR ResNet-56 (He et al. 2016)"),
    ("resnet8x4", "cifar_resnet:ResNet8x4", "CIFAR ResNet-8 with 4x wider stages (RepDistiller's student)"),
    ("resnet32x4", "cifar_resnet:ResNet32x4", "CIFAR ResNet-32 with 4x wider stages (RepDistiller's teacher)"),
    ("wrn-16-2", "wrn:WRN16x2", "Wide ResNet 16-2 (Zagoruyko & Komodakis 2016)"),
    ("wrn-40-2", "wrn:WRN40x2", "Wide ResNet 40-2 (Zagoruyko & Komodakis 2016)"),
    ("mobilenet_v3_small", "tv:MobileNetV3Small", "torchvision MobileNetV3-Small adapted to small inputs"),
    ("resnet18", "tv:ResNet18", "torchvision ResNet-18 adapted to small inputs (3x3 stem, no max-pool)"),
    # audio
    ("logmel-cnn", "audio:LogMelCNN", "Log-mel spectrogram front end (torchaudio) feeding a 2-D CNN"),
    ("wave-cnn", "audio:WaveCNN", "Raw-waveform 1-D CNN with a strided front end"),
    # text
    ("bow", "text:BagOfWords", "Bag of tokens: EmbeddingBag (mean) and a linear layer"),
    ("transformer", "text:SmallTransformer", "A small BERT built from a config (transformers), no download"),
    ("hf", "hf:HuggingFace", "A pretrained transformers model from a local directory (AutoModel), optionally frozen"),
]


@hookimpl
def kdbench_register_models(registry):
    for name, target, description in MODELS:
        registry.add(name, f"kdbench_models.{target}", description=description, version=1)
