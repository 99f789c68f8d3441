"""Provenance links between MLflow runs and dvc.lock (the end-to-end case is in tests/test_pipeline.py)."""
from __future__ import annotations

import hashlib
import json

import yaml

from zoo.stages.runs import lock_md5
from zoo.tracking import client, experiment_id, register_champion, set_run_tags


def _lock(tmp_path, out_md5: str) -> dict:
    entry = {"cmd": "python pipeline/convert.py m v",
             "outs": [{"path": "models/snn/full/m/v.safetensors", "hash": "md5", "md5": out_md5, "size": 5}]}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"convert-full@m-v": entry}}))
    return entry


def testlock_md5_counts_only_an_entry_that_describes_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "models/snn/full/m/v.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"first")
    entry = _lock(tmp_path, hashlib.md5(b"first").hexdigest())
    expected = hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()
    rel = ckpt.relative_to(tmp_path)
    assert lock_md5("convert-full@m-v", rel) == expected
    assert lock_md5("convert-full@m-v") == expected  # without a file: the entry as it is
    ckpt.write_bytes(b"second")  # the stage was rerun outside DVC: the entry is the previous run's
    assert lock_md5("convert-full@m-v", rel) == "none"
    assert lock_md5("convert-full@other-v", rel) == "none"
    ckpt.unlink()
    assert lock_md5("convert-full@m-v", rel) == "none"
    (tmp_path / "dvc.lock").write_text(": not yaml [")
    assert lock_md5("convert-full@m-v") == "none"


def test_set_run_tags_changes_only_matching_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    exp = experiment_id(uri, "snn-zoo")
    ids = {}
    for name, sha in [("a", "1" * 64), ("b", "2" * 64)]:
        ids[name] = c.create_run(exp, tags={"zoo_model": "m", "zoo_variant": "v", "snn_sha256": sha,
                                            "dvclock_md5": "none"}).info.run_id
    match = {"zoo_model": "m", "zoo_variant": "v", "snn_sha256": "1" * 64}
    assert set_run_tags(uri, "snn-zoo", match, {"dvclock_md5": "f" * 32}) == 1
    assert c.get_run(ids["a"]).data.tags["dvclock_md5"] == "f" * 32
    assert c.get_run(ids["b"]).data.tags["dvclock_md5"] == "none"
    assert set_run_tags(uri, "snn-zoo", match, {"dvclock_md5": "f" * 32}) == 0  # already tagged
    assert set_run_tags(uri, "no-such-experiment", match, {"dvclock_md5": "f" * 32}) == 0


def test_register_champion_reuses_the_version_of_a_registered_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    exp = experiment_id(uri, "snn-zoo")
    first, second = (c.create_run(exp, tags={"zoo_variant": v}).info.run_id for v in ("a", "b"))
    assert register_champion(uri, first, "snn-zoo-m") == 1
    assert register_champion(uri, first, "snn-zoo-m") == 1  # the same checkpoint repackaged: no new version
    assert register_champion(uri, second, "snn-zoo-m") == 2
    assert int(c.get_model_version_by_alias("snn-zoo-m", "champion").version) == 2
    assert register_champion(uri, first, "snn-zoo-m") == 1  # back to the first run: the alias follows
    assert int(c.get_model_version_by_alias("snn-zoo-m", "champion").version) == 1
    assert len(c.search_model_versions("name = 'snn-zoo-m'")) == 2
    assert register_champion(uri, first, "snn-zoo-other") == 1  # the same run under another name
