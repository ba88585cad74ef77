from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from kdbench import load_registry
from kdbench.errors import DuplicateComponentError, UnknownComponentError, UserError
from kdbench.registry import PluginInfo, Registry


def test_builtins_come_from_kdbench_entry_points(registry):
    assert {"ce", "kd"} <= set(registry.names("loss"))
    assert {"mlp", "cnn"} <= set(registry.names("model"))
    assert {"concat", "late"} <= set(registry.names("fusion"))
    assert "synthetic" in registry.names("dataset")
    assert {"md", "csv"} <= set(registry.names("reporter"))
    assert "local" in registry.names("executor")
    kd = registry.get("loss", "kd")
    assert kd.plugin.distribution == "kdbench"
    assert kd.plugin.name == "kdbench:losses"
    assert kd.version == 1 and kd.description


def test_factories_are_lazy():
    # Listing plugins must not import torch (kdbench list stays fast).
    code = "import sys, kdbench; r = kdbench.load_registry(); r.names('loss'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_create_by_name(registry):
    loss = registry.create("loss", "kd", temperature=2.0)
    assert loss.temperature == 2.0


def test_unknown_name_lists_close_matches(registry):
    with pytest.raises(UnknownComponentError) as err:
        registry.get("loss", "kdd")
    assert "did you mean 'kd'" in str(err.value)
    assert "known: at, c2kd, cc, ce" in str(err.value)


def test_unknown_kind(registry):
    with pytest.raises(UserError, match="unknown kind 'method'"):
        registry.names("method")


def test_duplicate_name_names_both_plugins():
    reg = Registry()
    reg.bind("loss", PluginInfo("first", "dist-a", "1.0")).add("kd", lambda: None, description="x")
    with pytest.raises(DuplicateComponentError) as err:
        reg.bind("loss", PluginInfo("second", "dist-b", "2.0")).add("kd", lambda: None, description="y")
    assert "first (dist-a 1.0)" in str(err.value) and "second (dist-b 2.0)" in str(err.value)


def test_duplicate_with_builtin_from_plugin_file(tmp_path):
    path = tmp_path / "dup.py"
    path.write_text(textwrap.dedent('''
        from kdbench import hookimpl
        @hookimpl
        def kdbench_register_losses(registry):
            registry.add("kd", "x:y", description="mine")
    '''))
    with pytest.raises(DuplicateComponentError, match="kdbench:losses.*dup.py"):
        load_registry(plugins=[str(path)])


def test_a_method_without_parameters_accepts_none(registry):
    with pytest.raises(UserError, match="unknown parameter 'x' for loss 'ce'; allowed: none"):
        registry.get("loss", "ce").validate_params({"x": 1})


def test_validate_params(registry):
    comp = registry.get("loss", "kd")
    assert comp.validate_params({"temperature": 2}) == {"temperature": 2.0}
    with pytest.raises(UserError, match="unknown parameter 'temprature'.*did you mean 'temperature'.*allowed: temperature"):
        comp.validate_params({"temprature": 2})
    with pytest.raises(UserError, match="parameter 'temperature' of loss 'kd' must be float"):
        comp.validate_params({"temperature": "hot"})


def test_fusion_injected_args_are_not_grid_params(registry):
    assert set(registry.get("fusion", "late").parameters()) == {"learned"}


def test_plugin_file_and_module(loss_plugin, tmp_path, monkeypatch):
    reg = load_registry(plugins=[str(loss_plugin)])
    comp = reg.get("loss", "cosine-logits")
    assert comp.plugin.name == str(loss_plugin)
    assert comp.description.startswith("Align the student")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry(plugins=["my_method"])
    assert reg.get("loss", "cosine-logits").plugin.name == "my_method"


def test_plugin_errors(tmp_path):
    with pytest.raises(UserError, match="plugin file not found"):
        load_registry(plugins=[str(tmp_path / "nope.py")])
    with pytest.raises(UserError, match="cannot be imported"):
        load_registry(plugins=["no_such_module_xyz"])
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    with pytest.raises(UserError, match="broken.py failed to load: SyntaxError"):
        load_registry(plugins=[str(broken)])


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A real installed distribution (a dist-info on sys.path) with a kdbench entry point."""
    (tmp_path / "thirdparty_kd.py").write_text(textwrap.dedent('''
        from kdbench import hookimpl
        @hookimpl
        def kdbench_register_losses(registry):
            registry.add("third", "kdbench_losses.kd:KD", description="from an installed plugin", version=3)
    '''))
    info = tmp_path / "thirdparty_kd-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-kd\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[kdbench]\nthird = thirdparty_kd\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugin_autoloads(third_party, monkeypatch):
    monkeypatch.delenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD")
    comp = load_registry().get("loss", "third")
    assert (comp.plugin.distribution, comp.plugin.version, comp.version) == ("thirdparty-kd", "0.3", 3)
    assert "third" not in load_registry(autoload=False).names("loss")


def test_disable_autoload_keeps_builtins(third_party, monkeypatch):
    monkeypatch.setenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    names = load_registry().names("loss")
    assert "third" not in names and "kd" in names


def test_cli_list(loss_plugin):
    from click.testing import CliRunner

    from kdbench.cli import main

    result = CliRunner().invoke(main, ["list", "losses", "--json", "--plugin", str(loss_plugin)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["kd"]["plugin"] == "kdbench:losses" and rows["kd"]["distribution"] == "kdbench"
    assert rows["cosine-logits"]["plugin"] == str(loss_plugin)
    assert {r["kind"] for r in rows.values()} == {"loss"}
    text = CliRunner().invoke(main, ["list"]).output
    for word in ("synthetic", "cnn", "concat", "kd", "md", "local", "kdbench:losses"):
        assert word in text
    bad = CliRunner().invoke(main, ["list", "widgets"])
    assert bad.exit_code == 2 and "unknown kind 'widgets'" in bad.output
