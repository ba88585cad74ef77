"""Every malformed grid gets one clear message naming the file and the key, and exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kdbench.cli import main
from tests.conftest import TINY_DATA


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def dry(path) -> tuple[int, str]:
    result = run_cli("run", "--grid", str(path), "--dry-run", "--results", str(path.parent / "res"))
    return result.exit_code, result.output


CASES = {
    "unknown method": (dict(methods="[ce, kdd]"), ["methods[1]", "unknown loss 'kdd'", "did you mean 'kd'"]),
    "unknown model": (dict(students="[{model: mlpp}]"), ["students[0]", "unknown model 'mlpp'", "did you mean 'mlp'"]),
    "unknown dataset": (dict(datasets="[cifar1000]"), ["datasets[0]", "unknown dataset 'cifar1000'"]),
    "unknown fusion": (dict(fusions="[concatenate]"), ["fusions[0]", "unknown fusion 'concatenate'", "concat"]),
    "wrong param name": (dict(methods="[{name: kd, temp: 2}]"), ["methods[0]", "unknown parameter 'temp'", "allowed: temperature"]),
    "wrong param type": (dict(teachers="[{model: cnn, width: wide}]"), ["teachers[0]", "parameter 'width' of model 'cnn' must be int", "'wide'"]),
    "out of range param": (dict(methods="[{name: kd, temperature: -1}]"), ["methods[0]", "temperature must be > 0"]),
    "missing modality": (dict(students="[{model: mlp, modalities: [text]}]"), ["student 'mlp[text]'", "asks for modality 'text'", "has only: image, audio, vector"]),
    "empty axis": (dict(students="[]"), ["key 'students' must not be empty"]),
    "missing axis": (dict(methods=None), ["missing key 'methods'"]),
    "unknown key": (dict(epochs="3"), ["unknown key 'epochs'", "allowed here:", "train"]),
    "unknown train key": (dict(train="{epochs: 2, lerning_rate: 0.1}"), ["unknown key 'train.lerning_rate'", "lr"]),
    "bad train value": (dict(train="{epochs: 0}"), ["key 'train.epochs'", "greater than 0"]),
    "bad optimizer": (dict(train="{optimizer: lion}"), ["key 'train.optimizer'", "'sgd', 'adam' or 'adamw'"]),
    "teacher needed": (dict(teachers="[]"), ["key 'teachers' must not be empty", "kd"]),
    "bad weights": (dict(methods="[{name: kd, weights: {kdd: 1.0}}]"), ["methods[0]", "names term 'kdd'", "ce, kd"]),
    "missing plugin file": (dict(plugins="[nowhere.py]"), ["plugin file not found", "nowhere.py"]),
    "bad exclude axis": (dict(exclude="[{students: mlp}]"), ["exclude[0]", "unknown axis 'students'"]),
    "exclude everything": (dict(exclude="[{seed: 0}]"), ["expands to no run"]),
    "bad dataset param": (dict(datasets="[{name: synthetic, modalities: [smell]}]"), ["dataset", "no modality 'smell'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_grid(case, write_grid):
    overrides, expected = CASES[case]
    path = write_grid(**overrides)
    code, out = dry(path)
    assert code == 2, out
    assert "Traceback" not in out
    assert out.startswith("kdbench: error: "), out
    assert str(path) in out or "plugin file not found" in out
    for text in expected:
        assert text in out, f"{text!r} not in {out!r}"


def test_broken_yaml(write_grid):
    path = write_grid("name: x\ndatasets: [synthetic\nstudents: [mlp]\n")
    code, out = dry(path)
    assert code == 2 and "broken YAML at line" in out and str(path) in out


def test_not_a_mapping(write_grid):
    code, out = dry(write_grid("- a\n- b\n"))
    assert code == 2 and "a grid file is a mapping" in out


def test_missing_grid_file(tmp_path):
    result = run_cli("run", "--grid", str(tmp_path / "none.yaml"), "--dry-run")
    assert result.exit_code == 2
    assert "grid file not found" in result.output and "quickstart" in result.output


def test_yaml_cannot_run_code(write_grid):
    code, out = dry(write_grid("name: !!python/object/apply:os.system ['echo hacked']\n"))
    assert code == 2 and "broken YAML" in out


def test_wrong_device(write_grid, tmp_path):
    result = run_cli("run", "--grid", str(write_grid()), "--devices", "cuda:7", "--results", str(tmp_path / "r"))
    assert result.exit_code == 2 and "cuda:7" in result.output and "not available" in result.output


def test_shipped_grid_by_name():
    result = run_cli("run", "--grid", "quickstart", "--dry-run", "--results", "/nonexistent-kdbench-results")
    assert result.exit_code == 0, result.output
    assert "2 teacher job(s), 8 run(s)" in result.output


def test_grid_plugins_relative_to_grid_file(write_grid, loss_plugin):
    path = write_grid(plugins=f"[{loss_plugin.name}]", methods="[ce, cosine-logits]")
    code, out = dry(path)
    assert code == 0, out
    assert "cosine-logits" in out


def test_tiny_data_constant_is_valid_yaml():
    import yaml

    assert yaml.safe_load(TINY_DATA)["name"] == "synthetic"
