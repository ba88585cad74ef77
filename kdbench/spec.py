"""Run specifications: frozen, JSON-serialisable, identified by a hash.

A run's identity is the SHA-256 of its canonical JSON (sorted keys, no spaces): the
resolved components with their parameters and versions, the seed and the training
settings. The same grid entry always maps to the same ``run_id``, which is what
lets a rerun skip finished work; changing anything that changes the result
(a parameter, a component's version, a training setting) gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ComponentRef:
    """A component chosen in a grid: its name, validated params and version.

    ``label`` is how tables show it (the grid's ``label:`` or name + params); it is
    not part of the run's identity.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    label: str = ""

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "version": self.version}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComponentRef:
        return cls(**data)


@dataclass(frozen=True)
class ModelRef(ComponentRef):
    """A teacher or student: a model family, the modalities it sees (``()`` = all the
    dataset has), per-modality encoder overrides and an optional own fusion."""

    modalities: tuple[str, ...] = ()
    encoders: dict[str, ComponentRef] = field(default_factory=dict)
    fusion: ComponentRef | None = None

    def identity(self) -> dict[str, Any]:
        out = super().identity()
        out["modalities"] = list(self.modalities)
        out["encoders"] = {m: e.identity() for m, e in sorted(self.encoders.items())}
        out["fusion"] = self.fusion.identity() if self.fusion else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        data = dict(data)
        data["modalities"] = tuple(data.get("modalities") or ())
        data["encoders"] = {m: ComponentRef.from_dict(e) for m, e in (data.get("encoders") or {}).items()}
        data["fusion"] = ComponentRef.from_dict(data["fusion"]) if data.get("fusion") else None
        return cls(**data)


@dataclass(frozen=True)
class MethodRef(ComponentRef):
    """A distillation method: the loss plugin, the weight of every term (``ce`` and
    the plugin's own) and the epochs over which each term's weight warms up linearly."""

    weights: dict[str, float] = field(default_factory=dict)
    warmup: dict[str, int] = field(default_factory=dict)
    needs_teacher: bool = True
    baseline: bool = False  # the method KD gains are measured against

    def identity(self) -> dict[str, Any]:
        out = super().identity()
        out["weights"] = self.weights
        out["warmup"] = self.warmup
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodRef:
        return cls(**data)


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher training: cached and shared by every student run that needs it."""

    dataset: ComponentRef
    teacher: ModelRef
    fusion: ComponentRef
    seed: int
    train: dict[str, Any]

    @property
    def key(self) -> str:
        return digest(
            {
                "dataset": self.dataset.identity(),
                "teacher": self.teacher.identity(),
                "fusion": self.fusion.identity(),
                "seed": self.seed,
                "train": self.train,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.to_dict(),
            "teacher": self.teacher.to_dict(),
            "fusion": self.fusion.to_dict(),
            "seed": self.seed,
            "train": self.train,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherSpec:
        return cls(
            ComponentRef.from_dict(d["dataset"]),
            ModelRef.from_dict(d["teacher"]),
            ComponentRef.from_dict(d["fusion"]),
            int(d["seed"]),
            d["train"],
        )


@dataclass(frozen=True)
class RunSpec:
    """One student run. ``teacher`` is None for methods that need no teacher (the
    ``ce`` baseline), which therefore run once per (dataset, student, fusion, seed)."""

    dataset: ComponentRef
    teacher: ModelRef | None
    student: ModelRef
    fusion: ComponentRef
    method: MethodRef
    seed: int
    train: dict[str, Any]
    teacher_train: dict[str, Any]
    distill: dict[str, Any]

    @property
    def run_id(self) -> str:
        return digest(
            {
                "dataset": self.dataset.identity(),
                "teacher": self.teacher.identity() if self.teacher else None,
                "student": self.student.identity(),
                "fusion": self.fusion.identity(),
                "method": self.method.identity(),
                "seed": self.seed,
                "train": self.train,
                "teacher_train": self.teacher_train if self.teacher else None,
                "distill": self.distill,
            }
        )

    @property
    def teacher_spec(self) -> TeacherSpec | None:
        if self.teacher is None:
            return None
        return TeacherSpec(self.dataset, self.teacher, self.fusion, self.seed, self.teacher_train)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.to_dict(),
            "teacher": self.teacher.to_dict() if self.teacher else None,
            "student": self.student.to_dict(),
            "fusion": self.fusion.to_dict(),
            "method": self.method.to_dict(),
            "seed": self.seed,
            "train": self.train,
            "teacher_train": self.teacher_train,
            "distill": self.distill,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(
            ComponentRef.from_dict(d["dataset"]),
            ModelRef.from_dict(d["teacher"]) if d.get("teacher") else None,
            ModelRef.from_dict(d["student"]),
            ComponentRef.from_dict(d["fusion"]),
            MethodRef.from_dict(d["method"]),
            int(d["seed"]),
            d["train"],
            d["teacher_train"],
            d["distill"],
        )
