"""Grid files: read (YAML, safe_load), validated with pydantic, resolved against the
registry. Every mistake is one message naming the file, the key and what is allowed.

Reference (also in the README)::

    name: quickstart                       # required; names the results and tables
    datasets: [synthetic]                  # a name, or {name: ..., label: ..., <params>}
    teachers: [{model: cnn, width: 32}]    # {model, modalities, encoders, fusion, label, <params>}
    students: [{model: cnn, width: 8}, {model: mlp, modalities: [audio]}]
    fusions: [concat]                      # shared by teacher and student unless a model sets fusion:
    methods: [ce, kd, {name: kd, temperature: 2.0, weights: {ce: 0.1, kd: 0.9}, warmup: {kd: 2}}]
    seeds: [0, 1]
    train: {epochs: 5, batch_size: 64, optimizer: sgd, lr: 0.05}
    teacher_train: {epochs: 8}             # overrides of train: for the teachers
    distill: {init: scratch, finetune_epochs: 0, rounds: 1, target: null}
    metrics: {latency: true}
    exclude: [{student: mlp, method: kd}]  # drop runs matching every key of a rule
    include: [{student: {model: mlp, width: 4}, method: kd}]  # extra sub-grids
    plugins: [my_method.py]                # relative to the grid file
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError

from kdbench.errors import UserError
from kdbench.spec import ComponentRef, MethodRef, ModelRef

Entry = Union[str, dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSettings(_Strict):
    """How one model is trained; selection uses the validation split only."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    eval_batch_size: PositiveInt = 512
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: PositiveInt | None = None  # early stop after this many epochs without a better val metric
    select: Literal["accuracy", "f1_macro"] = "accuracy"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast in the training steps
    channels_last: bool = False  # NHWC memory layout for image models (helps tensor cores)
    compile: bool = False  # torch.compile the model (nn.Module.compile)


class DistillSettings(_Strict):
    """The student's stages: init, distillation, optional fine-tuning, optional rounds."""

    init: Literal["scratch", "teacher"] = "scratch"
    finetune_epochs: NonNegativeInt = 0
    rounds: PositiveInt = 1
    target: float | None = Field(default=None, ge=0.0, le=1.0)


class MetricsSettings(_Strict):
    latency: bool = True
    latency_min_time: PositiveFloat = 0.2  # seconds of timing per measurement


class GridFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: list[Entry] = Field(min_length=1)
    teachers: list[Entry] = Field(default_factory=list)
    students: list[Entry] = Field(min_length=1)
    fusions: list[Entry] = Field(default_factory=lambda: ["concat"], min_length=1)
    methods: list[Entry] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    teacher_train: dict[str, Any] = Field(default_factory=dict)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)


@dataclass
class Grid:
    """A grid file, validated and resolved against a registry."""

    name: str
    path: Path
    source: str
    datasets: list[ComponentRef]
    teachers: list[ModelRef]
    students: list[ModelRef]
    fusions: list[ComponentRef]
    methods: list[MethodRef]
    seeds: list[int]
    train: dict[str, Any]
    teacher_train: dict[str, Any]
    distill: dict[str, Any]
    metrics: dict[str, Any]
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)


def shipped_grids() -> dict[str, Path]:
    folder = resources.files("kdbench.grids")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith((".yaml", ".yml"))}


def find_grid(ref: str) -> Path:
    """A grid file path, or the name of a grid shipped with kdbench (``quickstart``)."""
    path = Path(ref)
    if path.is_file():
        return path
    shipped = shipped_grids()
    if ref in shipped:
        return shipped[ref]
    raise UserError(
        f"grid file not found: {ref}; pass a path or one of the shipped grids: {', '.join(sorted(shipped))}"
    )


def read_grid(ref: str) -> tuple[Path, GridFile, str]:
    """Read and structurally validate a grid file (no plugin is needed for this)."""
    path = find_grid(ref)
    source = path.read_text()
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: broken YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a grid file is a mapping (name:, datasets:, students:, methods:, ...), got {type(raw).__name__}")
    try:
        grid = GridFile.model_validate(raw)
    except ValidationError as exc:
        raise UserError("\n".join(_format_error(path, err) for err in exc.errors())) from None
    return path, grid, source


def _format_error(path: Path, err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("str", "dict[")))
    typ = err["type"]
    if typ == "extra_forbidden":
        scope = ".".join(str(p) for p in err["loc"][:-1])
        model = GridFile if not scope else GridFile.model_fields[scope].annotation
        allowed = ", ".join(getattr(model, "model_fields", {})) or "?"
        return f"{path}: unknown key '{loc}'; allowed here: {allowed}"
    if typ == "missing":
        return f"{path}: missing key '{loc}'"
    if typ == "too_short":
        return f"{path}: key '{loc}' must not be empty"
    return f"{path}: key '{loc}': {err['msg']} (got {err.get('input')!r})"


def parse_grid(ref: str, registry) -> Grid:
    """Read ``ref`` and resolve every component against ``registry``."""
    path, grid, source = read_grid(ref)
    return resolve_grid(path, grid, source, registry)


def grid_plugins(path: Path, grid: GridFile) -> list[str]:
    """The grid's ``plugins:``, file paths taken relative to the grid file."""
    out = []
    for ref in grid.plugins:
        candidate = path.parent / ref
        out.append(str(candidate) if ref.endswith(".py") or candidate.exists() else ref)
    return out


def resolve_grid(path: Path, grid: GridFile, source: str, registry) -> Grid:
    def at(key: str, fn, *args):
        try:
            return fn(*args)
        except UserError as exc:
            raise UserError(f"{path}: {key}: {exc}") from None

    teacher_train = {**grid.train.model_dump(), **grid.teacher_train}
    try:
        teacher_train = TrainSettings.model_validate(teacher_train).model_dump()
    except ValidationError as exc:
        raise UserError("\n".join(_format_error(path, {**e, "loc": ("teacher_train", *e["loc"])}) for e in exc.errors())) from None
    resolved = Grid(
        name=grid.name,
        path=path,
        source=source,
        datasets=[at(f"datasets[{i}]", component, registry, "dataset", e) for i, e in enumerate(grid.datasets)],
        teachers=[at(f"teachers[{i}]", model_ref, registry, e) for i, e in enumerate(grid.teachers)],
        students=[at(f"students[{i}]", model_ref, registry, e) for i, e in enumerate(grid.students)],
        fusions=[at(f"fusions[{i}]", component, registry, "fusion", e) for i, e in enumerate(grid.fusions)],
        methods=[at(f"methods[{i}]", method_ref, registry, e) for i, e in enumerate(grid.methods)],
        seeds=list(dict.fromkeys(grid.seeds)),
        train=grid.train.model_dump(),
        teacher_train=teacher_train,
        distill=grid.distill.model_dump(),
        metrics=grid.metrics.model_dump(),
        include=grid.include,
        exclude=grid.exclude,
        plugins=grid_plugins(path, grid),
    )
    if any(m.needs_teacher for m in resolved.methods) and not resolved.teachers:
        needy = ", ".join(m.label for m in resolved.methods if m.needs_teacher)
        raise UserError(f"{path}: key 'teachers' must not be empty: method(s) {needy} distil from a teacher")
    return resolved


def _split(entry: Entry, name_key: str, kind: str) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    entry = dict(entry)
    if name_key not in entry:
        raise UserError(f"a {kind} entry needs '{name_key}:' (got keys: {', '.join(entry) or 'none'})")
    name = entry.pop(name_key)
    if not isinstance(name, str):
        raise UserError(f"'{name_key}' must be a {kind} name, got {name!r}")
    return name, entry


def _label(name: str, params: dict[str, Any], label: Any) -> str:
    if label:
        return str(label)
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"


def component(registry, kind: str, entry: Entry) -> ComponentRef:
    name, rest = _split(entry, "name", kind)
    label = rest.pop("label", None)
    comp = registry.get(kind, name)
    params = comp.validate_params(rest)
    return ComponentRef(name, params, comp.version, _label(name, params, label))


def model_ref(registry, entry: Entry) -> ModelRef:
    name, rest = _split(entry, "model", "model")
    label = rest.pop("label", None)
    modalities = rest.pop("modalities", None) or ()
    if isinstance(modalities, str):
        modalities = [modalities]
    if not isinstance(modalities, (list, tuple)) or not all(isinstance(m, str) for m in modalities):
        raise UserError(f"'modalities' must be a list of modality names, got {modalities!r}")
    encoders_raw = rest.pop("encoders", None) or {}
    if not isinstance(encoders_raw, dict):
        raise UserError(f"'encoders' maps a modality to a model, e.g. {{audio: mlp}}, got {encoders_raw!r}")
    fusion_raw = rest.pop("fusion", None)
    comp = registry.get("model", name)
    params = comp.validate_params(rest)
    encoders = {}
    for modality, enc in encoders_raw.items():
        ename, eparams = _split(enc, "model", "encoder")
        ecomp = registry.get("model", ename)
        eparams = ecomp.validate_params(eparams)
        encoders[modality] = ComponentRef(ename, eparams, ecomp.version, _label(ename, eparams, None))
    fusion = component(registry, "fusion", fusion_raw) if fusion_raw else None
    text = _label(name, params, label)
    if not label:
        if encoders:
            text += "+" + "+".join(f"{m}:{e.label}" for m, e in encoders.items())
        if modalities:
            text += "[" + ",".join(modalities) + "]"
        if fusion:
            text += f"@{fusion.label}"
    return ModelRef(name, params, comp.version, text, tuple(modalities), encoders, fusion)


def method_ref(registry, entry: Entry) -> MethodRef:
    name, rest = _split(entry, "name", "method")
    label = rest.pop("label", None)
    weights = rest.pop("weights", None) or {}
    warmup = rest.pop("warmup", None) or {}
    comp = registry.get("loss", name)
    params = comp.validate_params(rest)
    factory = comp.resolve()
    try:  # a loss is cheap to build: catch out-of-range hyper-parameters now
        factory(**params)
    except (ValueError, TypeError) as exc:
        raise UserError(f"method '{name}': {exc}") from None
    terms = tuple(getattr(factory, "terms", ()))
    merged = {"ce": 1.0, **{t: 1.0 for t in terms}, **getattr(factory, "default_weights", {})}
    for key, table in (("weights", weights), ("warmup", warmup)):
        if not isinstance(table, dict):
            raise UserError(f"'{key}' maps a loss term to a number, e.g. {{ce: 0.1, {terms[0] if terms else name}: 0.9}}")
        for term, value in table.items():
            if terms and term not in terms and term != "ce":
                raise UserError(f"'{key}' names term '{term}' but method '{name}' has terms: ce, {', '.join(terms)}")
            if not isinstance(value, (int, float)) or value < 0:
                raise UserError(f"'{key}.{term}' must be a number >= 0, got {value!r}")
    merged.update({k: float(v) for k, v in weights.items()})
    return MethodRef(
        name,
        params,
        comp.version,
        _label(name, params, label),
        weights=merged,
        warmup={k: int(v) for k, v in warmup.items()},
        needs_teacher=bool(getattr(factory, "needs_teacher", True)),
        baseline=bool(getattr(factory, "baseline", False)),
    )
