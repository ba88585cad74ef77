"""The plugin contract: one hook per kind of component, all prefixed ``kdbench_``.

Every hook receives a :class:`~kdbench.registry.KindRegistry` already bound to its
kind; a plugin calls ``registry.add(name, factory, description=..., version=...)``
once per component. Factories are registered, not built objects, so that heavy
imports (torch, torchvision, transformers) happen only when a component is used.
A factory may be a callable or a ``"module:attribute"`` string imported on first use.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("kdbench")
hookimpl = pluggy.HookimplMarker("kdbench")


@hookspec
def kdbench_register_datasets(registry):
    """Register dataset factories.

    A dataset factory takes keyword parameters and returns an object with
    ``info() -> DatasetInfo`` (cheap: no data loaded) and ``load() -> DatasetSplits``
    (train, val and test splits; the test split is never used for selection).
    """


@hookspec
def kdbench_register_models(registry):
    """Register model families (teachers and students alike).

    A model factory takes keyword parameters (width, depth, ...) and returns an
    :class:`~kdbench.types.EncoderFactory`: ``build(modality, spec)`` returns an
    encoder module for one modality or raises ``IncompatibleError``. The core puts
    the encoders, a fusion and a head together.
    """


@hookspec
def kdbench_register_fusions(registry):
    """Register fusion factories.

    Called as ``factory(embed_dims: dict[str, int], num_classes: int, **params)``;
    returns an ``nn.Module`` mapping modality embeddings to a
    :class:`~kdbench.types.FusionOutput`.
    """


@hookspec
def kdbench_register_losses(registry):
    """Register distillation methods (loss modules).

    Called with the method's keyword hyper-parameters (defaults are the paper's);
    returns an ``nn.Module`` with ``setup(student_probe, teacher_probe)`` and
    ``forward(student_out, teacher_out, batch) -> dict[str, Tensor]`` of named,
    unweighted terms. The trainer adds ``"ce"`` and applies the grid's weights.
    """


@hookspec
def kdbench_register_reporters(registry):
    """Register reporters: ``factory(**params)`` returns an object with
    ``write(board: Leaderboard, out_dir: Path) -> list[Path]``."""


@hookspec
def kdbench_register_executors(registry):
    """Register executors: ``factory(**params)`` returns an object with
    ``execute(plan: Plan, context: ExecutionContext) -> ExecutionSummary``."""
