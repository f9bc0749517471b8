import math

import pytest

from bench.store import atomic_path, read_json, write_json_atomic


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_non_finite_values_refused(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_json_atomic(tmp_path / "r.json", {"psnr": math.inf})
    assert not (tmp_path / "r.json").exists()
