from __future__ import annotations

import json
import os

import pytest

from kdbench.store import ResultStore, atomic_write


def test_atomic_write_replaces_whole_file(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"run_id": "abc", "status": "done", "x": 1})
    store.put({"run_id": "abc", "status": "failed", "x": 2})
    assert store.get("abc") == {"run_id": "abc", "status": "failed", "x": 2}
    assert store.status("abc") == "failed" and store.status("zzz") is None
    assert os.listdir(store.runs_dir) == ["abc.json"]


def test_crash_mid_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "runs" / "r.json"
    atomic_write(path, lambda p: p.write_text('{"old": true}'))

    def crash(p):
        p.write_text('{"half": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(path.parent) == ["r.json"]


def test_temporaries_of_a_killed_run_are_ignored_and_cleaned(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"run_id": "a", "status": "done"})
    (store.runs_dir / ".tmp-b.json.x1y2").write_text('{"run_id": "b", "sta')
    assert [d["run_id"] for d in store.results()] == ["a"]
    assert store.clean_temporaries() == 1
    assert os.listdir(store.runs_dir) == ["a.json"]


def test_teacher_cache_is_safetensors(tmp_path):
    import torch

    store = ResultStore(tmp_path)
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    store.save_teacher("k", state, {"key": "k", "metrics": {"accuracy": 1.0}})
    weights, meta = store.teacher_paths("k")
    assert weights.suffix == ".safetensors"
    assert torch.equal(store.load_teacher_state("k")["w"], state["w"])
    assert store.teacher_record("k")["metrics"]["accuracy"] == 1.0
    weights.unlink()
    assert store.teacher_record("k") is None  # a record without its weights is no teacher
