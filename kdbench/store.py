"""The result store: one JSON document per run, and the teacher cache.

Layout under the results directory::

    runs/<run_id>.json            one result document per student run
    teachers/<key>.safetensors    trained teacher weights (safetensors: loading never unpickles)
    teachers/<key>.json           the teacher's spec and metrics

Every file is written to a temporary file in the same directory, fsynced and
renamed over its final name, so a crash (even SIGKILL) leaves either the whole file
or none; a left-over temporary file is ignored and cleaned up on the next run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file, fsync it, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


class ResultStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.teachers_dir = self.root / "teachers"

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed run; returns how many."""
        n = 0
        for folder in (self.runs_dir, self.teachers_dir):
            if folder.is_dir():
                for tmp in folder.glob(TMP_PREFIX + "*"):
                    tmp.unlink(missing_ok=True)
                    n += 1
        return n

    def path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def get(self, run_id: str) -> dict[str, Any] | None:
        return read_json(self.path(run_id))

    def status(self, run_id: str) -> str | None:
        doc = self.get(run_id)
        return doc.get("status") if doc else None

    def put(self, doc: dict[str, Any]) -> Path:
        path = self.path(doc["run_id"])
        write_json(path, doc)
        return path

    def results(self) -> Iterator[dict[str, Any]]:
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.glob("*.json")):
            doc = read_json(path)
            if doc is not None and "run_id" in doc:
                yield doc

    # --- teachers -----------------------------------------------------------
    def teacher_paths(self, key: str) -> tuple[Path, Path]:
        return self.teachers_dir / f"{key}.safetensors", self.teachers_dir / f"{key}.json"

    def teacher_record(self, key: str) -> dict[str, Any] | None:
        weights, meta = self.teacher_paths(key)
        if not weights.is_file():
            return None
        return read_json(meta)

    def teacher_meta(self, key: str) -> dict[str, Any] | None:
        """A teacher's record, whether or not its weights are here (published
        results keep the records, not the weights)."""
        return read_json(self.teacher_paths(key)[1])

    def save_teacher(self, key: str, state: dict[str, Any], record: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        weights, meta = self.teacher_paths(key)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write(weights, lambda p: save_file(tensors, str(p)))
        write_json(meta, record)  # written last: a record means the weights are whole

    def load_teacher_state(self, key: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.teacher_paths(key)[0]))
