"""kdbench's builtin datasets, one file per source (imported only when used)."""

from kdbench import hookimpl

DATASETS = [
    ("synthetic", "synthetic:Synthetic", "Seeded multimodal classes (image-, audio- and vector-like) with per-modality informativeness"),
    ("digits", "digits:Digits", "Tri-modal spoken/written/handwritten digits (scikit-learn digits, espeak-ng speech, text), offline"),
    ("mnist", "vision:MNIST", "MNIST handwritten digits through torchvision (root, download)"),
    ("fashion-mnist", "vision:FashionMNIST", "Fashion-MNIST through torchvision; found at Debian's dataset-fashion-mnist when installed"),
    ("cifar10", "vision:CIFAR10", "CIFAR-10 through torchvision (root, download)"),
    ("cifar100", "vision:CIFAR100", "CIFAR-100 through torchvision (root, download)"),
    ("speechcommands", "speechcommands:SpeechCommands", "Google Speech Commands through torchaudio (root, download), log-mel"),
    ("manifest", "manifest:Manifest", "Your own multimodal data: a CSV/JSONL of labels, image/audio paths and text"),
]


@hookimpl
def kdbench_register_datasets(registry):
    for name, target, description in DATASETS:
        registry.add(name, f"kdbench_datasets.{target}", description=description, version=1)
