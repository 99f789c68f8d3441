"""MLflow tracking: one parent run per model, one child run per conversion variant, the model registry.

The store is ``tracking.uri`` from params.yaml (default ``sqlite:///mlflow.db`` in the project root), or
``MLFLOW_TRACKING_URI`` when set — set it to an absolute sqlite path or a server URL so that DVC experiment
queues (which run in temporary workspaces) share one store. Writers on one sqlite file are serialized with a
file lock, so parallel stages do not hit "database is locked".
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

PARENT_KIND, CHILD_KIND = "model", "variant"


def resolve_uri(uri: str | None = None) -> str:
    """Env MLFLOW_TRACKING_URI wins; a relative sqlite path is made absolute (relative to the cwd)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or uri or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).absolute())
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(f"tracking URI {uri!r}: use sqlite:///path.db or an MLflow server URL (the file store is "
                         "deprecated in MLflow 3)")
    return uri


def _db_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def locked(uri: str) -> Iterator[None]:
    db = _db_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=600):
        yield


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    db = _db_path(uri)
    artifacts = (db.parent / "mlartifacts").absolute().as_uri() if db is not None else None
    return c.create_experiment(name, artifact_location=artifacts)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def parent_run(uri: str, experiment: str, model: str, ann_sha256: str, tags: dict[str, str] | None = None) -> str:
    """The parent run of ``model`` trained weights ``ann_sha256``: found by tags, else created."""
    c = client(uri)
    exp_id = experiment_id(uri, experiment)
    found = c.search_runs([exp_id], filter_string=f"tags.zoo_kind = '{PARENT_KIND}' and tags.zoo_model = '{model}' "
                          f"and tags.ann_sha256 = '{ann_sha256}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = c.create_run(exp_id, run_name=model, tags={"zoo_kind": PARENT_KIND, "zoo_model": model,
                                                      "ann_sha256": ann_sha256, **(tags or {})})
    c.set_terminated(run.info.run_id)
    return run.info.run_id


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def log_variant(uri: str, experiment: str, *, model: str, variant: str, ann_sha256: str, recipe: dict[str, Any],
                result: dict[str, Any], artifacts: list[Path], checkpoint: Path | None, tags: dict[str, str],
                parent_tags: dict[str, str] | None = None) -> str:
    """Log one evaluated variant as a child run of its model's parent run; returns the child run id."""
    from mlflow.entities import Metric, Param, RunTag

    with locked(uri):
        c = client(uri)
        parent = parent_run(uri, experiment, model, ann_sha256, parent_tags)
        exp_id = experiment_id(uri, experiment)
        run = c.create_run(exp_id, run_name=variant, tags={
            "mlflow.parentRunId": parent, "zoo_kind": CHILD_KIND, "zoo_model": model, "zoo_variant": variant,
            "ann_sha256": ann_sha256, "git_commit": git_commit(), **tags})
        rid = run.info.run_id
        import time

        now = int(time.time() * 1000)
        metrics = []
        for t, acc in sorted(result["accuracy"].items(), key=lambda kv: int(kv[0])):
            metrics.append(Metric("snn_accuracy", float(acc), now, int(t)))
            metrics.append(Metric(f"accuracy_T{int(t)}", float(acc), now, 0))
            metrics.append(Metric("energy_ratio", float(result["energy_ratio"][t]), now, int(t)))
            metrics.append(Metric("spikes_per_image", float(result["spikes_per_image"][t]), now, int(t)))
            metrics.append(Metric("synops_per_image", float(result["synops_per_image"][t]), now, int(t)))
        t_max = max(result["accuracy"], key=int)
        metrics.append(Metric("energy_ratio_Tmax", float(result["energy_ratio"][t_max]), now, 0))
        if result.get("ann_accuracy") is not None:
            metrics.append(Metric("ann_accuracy", float(result["ann_accuracy"]), now, 0))
        params = [Param(k, v) for k, v in _flatten(recipe).items()]
        c.log_batch(rid, metrics=metrics, params=params, tags=[RunTag("zoo_params_count", str(len(params)))])
        for a in artifacts:
            c.log_artifact(rid, str(a), artifact_path="plots" if a.suffix == ".png" else "results")
        if checkpoint is not None:
            c.log_artifact(rid, str(checkpoint), artifact_path="snn")
        c.set_terminated(rid)
    return rid


def child_runs(uri: str, experiment: str, model: str, order_by: str | None = None) -> list:
    """Latest child run per variant of the model's most recent parent run."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.zoo_kind = '{PARENT_KIND}' and "
                            f"tags.zoo_model = '{model}'", order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return []
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'",
                         order_by=([order_by] if order_by else []) + ["attributes.start_time DESC"])
    latest: dict[str, Any] = {}
    for r in runs:  # keep the newest run of each variant
        v = r.data.tags.get("zoo_variant")
        if v not in latest or r.info.start_time > latest[v].info.start_time:
            latest[v] = r
    ordered = [r for r in runs if latest.get(r.data.tags.get("zoo_variant")) is r]
    return ordered


def ranked_variants(uri: str, experiment: str, model: str, at_T: int) -> list:
    """The model's latest child run per variant that has accuracy at T, best first (ties: lower energy)."""
    key = f"accuracy_T{at_T}"
    runs = [r for r in child_runs(uri, experiment, model) if key in r.data.metrics]
    return sorted(runs, key=lambda r: (-r.data.metrics[key], r.data.metrics.get("energy_ratio_Tmax", 0)))


def _runs_tagged(uri: str, experiment: str, tags: dict[str, str], max_results: int | None = None) -> list:
    """Runs of ``experiment`` whose tags include ``tags``, newest first ([] if the experiment does not exist)."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    kw = {"max_results": max_results} if max_results else {}
    return c.search_runs([exp.experiment_id], filter_string=" and ".join(f"tags.{k} = '{v}'" for k, v in tags.items()),
                         order_by=["attributes.start_time DESC"], **kw)


def latest_run(uri: str, experiment: str, tags: dict[str, str]):
    """The newest run of ``experiment`` whose tags include ``tags``, or None."""
    found = _runs_tagged(uri, experiment, tags, max_results=1)
    return found[0] if found else None


def set_run_tags(uri: str, experiment: str, match: dict[str, str], tags: dict[str, str]) -> int:
    """Set ``tags`` on every run of ``experiment`` whose tags include ``match`` and differ; returns how many."""
    n = 0
    with locked(uri):
        c = client(uri)
        for r in _runs_tagged(uri, experiment, match):
            if any(r.data.tags.get(k) != v for k, v in tags.items()):
                for k, v in tags.items():
                    c.set_tag(r.info.run_id, k, v)
                n += 1
    return n


def register_champion(uri: str, run_id: str, name: str, alias: str = "champion") -> int:
    """Register the run's SNN checkpoint (artifact ``snn/``) as a version of ``name`` and point ``alias`` at it.

    A run that is already registered under ``name`` keeps its version (the newest one, if it has several):
    repackaging an unchanged checkpoint moves the alias back to it instead of adding a duplicate version."""
    with locked(uri):
        c = client(uri)
        try:
            c.get_registered_model(name)
        except Exception:  # noqa: BLE001
            c.create_registered_model(name, description="snn-zoo spiking model (safetensors checkpoint)")
        known = c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if known:
            version = max(int(mv.version) for mv in known)
        else:
            run = c.get_run(run_id)
            version = int(c.create_model_version(name, source=f"{run.info.artifact_uri}/snn", run_id=run_id,
                                                 tags={"zoo_variant": run.data.tags.get("zoo_variant", "")}).version)
        c.set_registered_model_alias(name, alias, str(version))
        return version


__all__ = ["resolve_uri", "log_variant", "child_runs", "ranked_variants", "register_champion", "parent_run", "locked",
           "latest_run", "set_run_tags"]
