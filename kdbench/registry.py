"""The typed registry every plugin registers its components on.

One registry holds all kinds. Each component keeps its name, factory, the plugin
(and that plugin's distribution and version) it came from, a one-line description
and its own version, bumped whenever its behaviour changes (it is part of every
run's identity, so a bump invalidates old results instead of mixing them).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from kdbench.errors import DuplicateComponentError, UnknownComponentError, UserError

KINDS = ("dataset", "model", "fusion", "loss", "reporter", "executor")

# Arguments the core passes to a factory itself; a grid may not set them.
_INJECTED = {"fusion": ("embed_dims", "num_classes")}


@dataclass(frozen=True)
class PluginInfo:
    """Where components came from: the plugin's name and its distribution."""

    name: str
    distribution: str = ""
    version: str = ""

    def __str__(self) -> str:
        if self.distribution:
            return f"{self.name} ({self.distribution} {self.version})".strip()
        return self.name


@dataclass
class Component:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any] | str
    plugin: PluginInfo
    description: str = ""
    version: int = 1
    _resolved: Callable[..., Any] | None = field(default=None, repr=False)

    def resolve(self) -> Callable[..., Any]:
        """The factory, importing it first if it was registered as a string."""
        if self._resolved is None:
            factory = self.factory
            if isinstance(factory, str):
                module_name, _, attr = factory.partition(":")
                factory = getattr(importlib.import_module(module_name), attr)
            self._resolved = factory
        return self._resolved

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters a grid may set, by name (injected ones left out)."""
        factory = self.resolve()
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = dict(inspect.signature(target).parameters)
        params.pop("self", None)
        for name in _INJECTED.get(self.kind, ()):
            params.pop(name, None)
        return params

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check names and types of ``params`` against the factory's signature.

        Returns the parameters as the factory will see them (pydantic coercion, e.g.
        ``4`` to ``4.0`` for a float). Raises ``UserError`` naming the parameter and
        what is allowed.
        """
        sig = self.parameters()
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.values())
        named = {n: p for n, p in sig.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        factory = self.resolve()
        try:
            hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
        except Exception:  # unresolvable annotations: check names only
            hints = {}
        from pydantic import TypeAdapter, ValidationError

        out = {}
        for key, value in params.items():
            if key not in named:
                if accepts_any:
                    out[key] = value
                    continue
                allowed = ", ".join(named) or "none"
                hint = difflib.get_close_matches(key, list(named), n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise UserError(f"unknown parameter '{key}' for {self.kind} '{self.name}'{did}; allowed: {allowed}")
            if key in hints:
                try:
                    value = TypeAdapter(hints[key]).validate_python(value, strict=False)
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise UserError(
                        f"parameter '{key}' of {self.kind} '{self.name}' must be {_type_name(hints[key])}, "
                        f"got {value!r} ({msg})"
                    ) from None
            out[key] = value
        missing = [n for n, p in named.items() if p.default is p.empty and n not in params]
        if missing:
            raise UserError(f"{self.kind} '{self.name}' needs parameter(s): {', '.join(missing)}")
        return out

    def create(self, *args: Any, **params: Any) -> Any:
        return self.resolve()(*args, **params)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Registry:
    """All components of all kinds, filled by the plugins' ``kdbench_register_*`` hooks."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self.plugins: list[PluginInfo] = []
        self.plugin_refs: tuple[str, ...] = ()  # the extra plugins it was loaded with (workers reload them)

    def bind(self, kind: str, plugin: PluginInfo) -> KindRegistry:
        """The view a hook receives: ``add`` registers on ``kind`` for ``plugin``."""
        return KindRegistry(self, kind, plugin)

    def _add(self, component: Component) -> None:
        existing = self._components[component.kind].get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{component.kind} '{component.name}' is registered twice: by plugin {existing.plugin} "
                f"and by plugin {component.plugin}; uninstall one or rename the component"
            )
        self._components[component.kind][component.name] = component

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._components[kind])

    def components(self, kind: str | None = None) -> list[Component]:
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            self._check_kind(k)
        return [self._components[k][n] for k in kinds for n in sorted(self._components[k])]

    def get(self, kind: str, name: str) -> Component:
        self._check_kind(kind)
        try:
            return self._components[kind][name]
        except KeyError:
            known = sorted(self._components[kind])
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownComponentError(
                f"unknown {kind} '{name}'; {hint}known: {', '.join(known) or 'none'} "
                f"(`kdbench list {kind}` shows them; a plugin file is loaded with --plugin FILE)"
            ) from None

    def create(self, kind: str, name: str, *args: Any, **params: Any) -> Any:
        """Build component ``name`` of ``kind`` with keyword ``params``."""
        return self.get(kind, name).create(*args, **params)

    def _check_kind(self, kind: str) -> None:
        if kind not in self._components:
            raise UserError(f"unknown kind '{kind}'; kinds: {', '.join(KINDS)}")


class KindRegistry:
    """A registry bound to one kind and one plugin, as a hook receives it."""

    def __init__(self, registry: Registry, kind: str, plugin: PluginInfo) -> None:
        self.registry = registry
        self.kind = kind
        self.plugin = plugin

    def add(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        description: str = "",
        version: int = 1,
    ) -> None:
        """Register ``factory`` as ``name``.

        Args:
            name: lower-case, stable component name (``kd``, ``resnet8x4``).
            factory: a callable, or ``"module:attribute"`` imported on first use.
            description: one line shown by ``kdbench list``; defaults to the first
                line of the factory's docstring.
            version: bump it whenever the component's behaviour changes.
        """
        if not description and not isinstance(factory, str):
            description = (inspect.getdoc(factory) or "").strip().splitlines()[0:1]
            description = description[0] if description else ""
        self.registry._add(Component(self.kind, name, factory, self.plugin, description, int(version)))

    def names(self) -> list[str]:
        return self.registry.names(self.kind)
