"""Plugin loading: entry points of group ``kdbench``, plus files or modules named by
the user (``--plugin FILE|MODULE`` or ``plugins:`` in a grid file).

A fresh plugin manager is built for every run; nothing is loaded at import time.
kdbench's builtins are declared in kdbench's own ``[project.entry-points.kdbench]``
and load exactly like third-party plugins. ``KDBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
switches off the entry points of every other distribution (tests use it), as
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pluggy

from kdbench import hookspecs
from kdbench.errors import UserError
from kdbench.registry import PluginInfo, Registry

ENTRY_POINT_GROUP = "kdbench"
HOOKS = {
    "dataset": "kdbench_register_datasets",
    "model": "kdbench_register_models",
    "fusion": "kdbench_register_fusions",
    "loss": "kdbench_register_losses",
    "reporter": "kdbench_register_reporters",
    "executor": "kdbench_register_executors",
}


def _autoload_disabled() -> bool:
    return os.environ.get("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")


def get_plugin_manager(autoload: bool = True, extra: Iterable[str] = ()) -> pluggy.PluginManager:
    """A new plugin manager with kdbench's hookspecs and the requested plugins.

    Args:
        autoload: load third-party entry points (kdbench's own always load); also off
            when ``KDBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set.
        extra: plugin files (``path/to/plugin.py``) or importable module names.
    """
    pm = pluggy.PluginManager("kdbench")
    pm.add_hookspecs(hookspecs)
    pm.plugin_info = {}  # plugin name -> PluginInfo
    third_party = autoload and not _autoload_disabled()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ""
        if dist_name != "kdbench" and not third_party:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            raise UserError(f"plugin '{ep.name}' from {dist_name or 'an unknown distribution'} failed to load: {exc}") from exc
        name = f"{dist_name}:{ep.name}" if dist_name else ep.name
        _register(pm, module, PluginInfo(name, dist_name, dist.version if dist is not None else ""))
    for ref in extra:
        module, info = _load_extra(ref)
        _register(pm, module, info)
    pm.check_pending()
    return pm


def _register(pm: pluggy.PluginManager, module: ModuleType, info: PluginInfo) -> None:
    if pm.is_registered(module) or pm.has_plugin(info.name):
        return  # the same plugin named twice (e.g. --plugin and the grid's plugins:)
    pm.register(module, name=info.name)
    pm.plugin_info[info.name] = info


def _load_extra(ref: str) -> tuple[ModuleType, PluginInfo]:
    path = Path(ref)
    if ref.endswith(".py") or os.sep in ref or path.exists():
        if not path.is_file():
            raise UserError(f"plugin file not found: {ref}")
        path = path.resolve()
        module_name = f"kdbench_local_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
        if module_name in sys.modules:
            return sys.modules[module_name], PluginInfo(str(path))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # so dataclasses, pickling and workers find it
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise UserError(f"plugin file {ref} failed to load: {type(exc).__name__}: {exc}") from exc
        return module, PluginInfo(str(path))
    try:
        module = importlib.import_module(ref)
    except ImportError as exc:
        raise UserError(f"plugin module '{ref}' cannot be imported: {exc}; pass a file path or an installed module") from exc
    return module, PluginInfo(ref)


def load_registry(plugins: Iterable[str] = (), autoload: bool = True) -> Registry:
    """Build a :class:`Registry` from the entry points and the given plugins.

    Each plugin's hook implementations are called one by one with a registry view
    bound to the plugin, so every component knows where it came from.
    """
    pm = get_plugin_manager(autoload=autoload, extra=plugins)
    registry = Registry()
    registry.plugins = list(pm.plugin_info.values())
    for kind, hook_name in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = pm.plugin_info.get(impl.plugin_name, PluginInfo(impl.plugin_name))
            impl.function(registry=registry.bind(kind, info))
    registry.plugin_refs = tuple(plugins)
    return registry
