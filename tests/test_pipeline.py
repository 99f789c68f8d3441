"""The DVC pipeline end to end on the embedded demo, in a temporary copy of the project.

The copy trains shorter and evaluates fewer images/timesteps than `make demo` so the suite stays fast; the
stages, files and tracking are the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC copy of the project that has run `dvc repro publish-demo` once."""
    base = tmp_path_factory.mktemp("pipeline")
    repo = base / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith(("models/", "bench/")) or f == "dvc.lock":
            continue
        src = ROOT / f
        if src.is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / f)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for m in params["zoos"]["demo"]["models"]:
        params["models"][m]["train"]["epochs"] = 8
    params["evaluation"].update(timesteps=[1, 4, 16, 64], test_images=96, diagnostics=True)
    params["tracking"]["champion_at_T"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", ZOO_NUM_THREADS="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{base / 'mlflow.db'}", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", DVC_NO_ANALYTICS="1",
               ZOO_STAGE_MODULES=str(base / "modules.jsonl"))
    env.pop("ZOO_INDEX", None)
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "project"], repo, env)
    t0 = time.time()
    out = run(["dvc", "repro", "publish-demo"], repo, env, timeout=1500)
    return {"repo": repo, "env": env, "base": base, "seconds": time.time() - t0, "log": out.stdout}


def test_demo_runs_all_eight_stages(project):
    repo, log = project["repo"], project["log"]
    for stage in ["prepare@digits", "train@vgg-mini-digits", "export@resnet-mini-digits", "calibrate@vgg-mini-digits",
                  "convert-demo@resnet-mini-digits-hu2018", "evaluate-demo@vgg-mini-digits-cao2015",
                  "package-demo@vgg-mini-digits", "package-demo@resnet-mini-digits", "publish-demo"]:
        assert f"Running stage '{stage}'" in log
    index = json.loads((repo / "models/demo/index.json").read_text())
    assert set(index["models"]) == {"vgg-mini-digits", "resnet-mini-digits"}
    for name, entry in index["models"].items():
        assert len(entry["variants"]) == 6 and entry["ann_accuracy"] > 0.9
        for v in entry["variants"].values():
            assert set(v["accuracy"]) == {"1", "4", "16", "64"}
            assert (repo / "models/demo" / v["file"]).is_file()
            assert v["file"].startswith(f"{name}/")  # one folder per model: checkpoints, card, plot, entry
        folder = repo / "models/demo" / name
        assert (folder / "README.md").is_file() and (folder / "accuracy.png").is_file()
        assert json.loads((folder / "entry.json").read_text()) == entry
        best = max(entry["variants"].values(), key=lambda v: v["accuracy"]["64"])
        assert best["accuracy"]["64"] > entry["ann_accuracy"] - 0.05
        parity = json.loads((repo / f"models/build/{name}/onnx/parity.json").read_text())
        assert parity["passed"] and parity["max_abs_diff"] < 1e-3
    ev = json.loads((repo / "models/eval/demo/resnet-mini-digits/rueckauer2017.json").read_text())
    assert ev["images"] == 96 and ev["energy_ratio"]["64"] > 0 and ev["synops_per_image"]["64"] > 0
    assert (repo / "models/eval/demo/resnet-mini-digits/rueckauer2017-plots/rueckauer2017-correlation.png").is_file()


def test_every_module_a_stage_imported_is_one_of_its_dependencies(project):
    """At run time (zoo.stages logs the snn-zoo modules each stage imported): a change to any of them reruns the
    stage. tests/test_stage_deps.py checks that dvc.yaml lists nothing else."""
    from test_stage_deps import STAGES, declared_code, expand

    runs = [json.loads(line) for line in (project["base"] / "modules.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in runs} == set(STAGES)
    declared = declared_code()
    for r in runs:
        deps = set().union(*(expand(code) for _, code in declared[r["stage"]]))
        missing = sorted(set(r["modules"]) - deps)
        assert not missing, f"{r['stage']} {' '.join(r['args'])} imported {missing}, which dvc.yaml does not list"
        assert f"zoo/stages/{r['stage']}.py" in r["modules"]


def test_up_to_date_and_noop_repro_is_fast(project):
    repo, env = project["repo"], project["env"]
    status = run(["dvc", "status", "--with-deps", "publish-demo"], repo, env)
    assert "up to date" in status.stdout, status.stdout
    t0 = time.time()
    out = run(["dvc", "repro", "publish-demo"], repo, env)
    assert time.time() - t0 < 60, "a no-op dvc repro should take seconds"
    assert "Running stage" not in out.stdout


def _ran(log: str) -> list[str]:
    return sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))


def test_changing_one_variant_reruns_only_its_stages(project):
    repo, env = project["repo"], project["env"]
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["variants"]["rueckauer2017"]["overrides"] = {"percentile": 99.99}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run(["dvc", "status", "--with-deps", "publish-demo"], repo, env).stdout
        changed = sorted(line.rstrip(":") for line in status.splitlines() if line and not line.startswith((" ", "\t")))
        assert changed == ["convert-demo@resnet-mini-digits-rueckauer2017",
                           "convert-demo@vgg-mini-digits-rueckauer2017"], status
        ran = _ran(run(["dvc", "repro", "publish-demo"], repo, env).stdout)
    finally:
        path.write_text(original)
    assert ran == ["convert-demo@resnet-mini-digits-rueckauer2017", "convert-demo@vgg-mini-digits-rueckauer2017",
                   "evaluate-demo@resnet-mini-digits-rueckauer2017", "evaluate-demo@vgg-mini-digits-rueckauer2017",
                   "package-demo@resnet-mini-digits", "package-demo@vgg-mini-digits", "publish-demo"], ran
    run(["dvc", "repro", "publish-demo"], repo, env)  # back to the committed parameters


def test_mlflow_has_a_child_run_per_variant_and_a_champion(project):
    from mlflow.tracking import MlflowClient

    uri = project["env"]["MLFLOW_TRACKING_URI"]
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("snn-zoo")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.zoo_kind = 'model'")
    assert {r.data.tags["zoo_model"] for r in parents} == {"vgg-mini-digits", "resnet-mini-digits"}
    for parent in parents:
        children = c.search_runs([exp.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert {r.data.tags["zoo_variant"] for r in children} == {
            "cao2015", "diehl2015-model", "diehl2015-data", "rueckauer2017", "hu2018", "hunsberger2016"}
        for r in children:
            assert {"accuracy_T16", "accuracy_T64", "energy_ratio_Tmax", "ann_accuracy"} <= set(r.data.metrics)
            history = c.get_metric_history(r.info.run_id, "snn_accuracy")
            assert sorted(m.step for m in history) == [1, 4, 16, 64]
            assert r.data.params["norm"] and len(r.data.tags["git_commit"]) >= 7 and r.data.tags["snn_sha256"]
            assert len(r.data.tags["dvc_lock_md5"]) == 32  # the convert stage's dvc.lock entry
        model = parent.data.tags["zoo_model"]
        mv = c.get_model_version_by_alias(f"snn-zoo-{model}", "champion")
        assert mv.run_id in {r.info.run_id for r in children}
        entry = json.loads((project["repo"] / "models/demo/index.json").read_text())["models"][model]
        assert mv.tags["zoo_variant"] == entry["default_variant"]  # the registry agrees with the index


def test_stages_run_outside_dvc_get_their_lock_link_at_publish(project):
    """A convert + evaluate run directly (not by `dvc repro`) logs dvc_lock_md5=none, since dvc.lock still
    describes the previous checkpoint; once `dvc commit` records them, publish fills the tag in."""
    from zoo.tracking import client

    repo, env = project["repo"], project["env"]
    model, variant, stage = "vgg-mini-digits", "rueckauer2017", "convert-demo@vgg-mini-digits-rueckauer2017"
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["variants"][variant]["overrides"] = {"percentile": 99.0}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    c = client(env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("snn-zoo").experiment_id

    def latest_run():
        return c.search_runs([exp], filter_string=f"tags.zoo_model = '{model}' and tags.zoo_variant = '{variant}'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    try:
        run([sys.executable, "pipeline/convert.py", model, variant], repo, env)
        run([sys.executable, "pipeline/evaluate.py", model, variant], repo, env)
        direct = latest_run()
        assert direct.data.tags["dvc_lock_md5"] == "none"
        # an ad hoc run of a variant the demo zoo does not publish must not become the registry's champion
        for script in ("convert", "evaluate"):
            run([sys.executable, f"pipeline/{script}.py", model, "low-latency"], repo, env)
        run(["dvc", "commit", "-f", stage, f"evaluate-demo@{model}-{variant}"], repo, env)
        assert f"Running stage 'package-demo@{model}'" in run(["dvc", "repro", "publish-demo"], repo, env).stdout
        entry = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
        expected = hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        assert c.get_run(direct.info.run_id).data.tags["dvc_lock_md5"] == expected
        index = json.loads((repo / "models/demo/index.json").read_text())["models"][model]
        champion = c.get_run(c.get_model_version_by_alias(f"snn-zoo-{model}", "champion").run_id)
        assert champion.data.tags["zoo_variant"] == index["default_variant"] == index["mlflow"]["variant"]
        assert champion.data.tags["snn_sha256"] == index["variants"][index["default_variant"]]["sha256"]
    finally:
        path.write_text(original)
        for stray in [*(repo / "models/snn/demo" / model).glob("low-latency*"),
                      *(repo / "models/eval/demo" / model).glob("low-latency*")]:
            shutil.rmtree(stray) if stray.is_dir() else stray.unlink()
    run(["dvc", "repro", "publish-demo"], repo, env)  # back to the committed parameters
    assert latest_run().data.tags["dvc_lock_md5"] != "none"  # a `dvc repro` evaluation is linked at once


def test_zoo_best_answers(project):
    out = run([str(BIN / "zoo"), "best", "resnet-mini-digits", "--at-T", "16"], project["repo"], project["env"])
    assert "best variant of resnet-mini-digits at T=16" in out.stdout and "norm=" in out.stdout
    bad = run([str(BIN / "zoo"), "best", "nope", "--at-T", "16"], project["repo"], project["env"], check=False)
    assert bad.returncode != 0 and "no evaluated variants" in bad.stderr


def test_published_model_loads(project, monkeypatch):
    import zoo
    from zoo.data import PreparedData
    from zoo.evaluation import eval_subset

    demo = project["repo"] / "models/demo"
    monkeypatch.setenv("ZOO_INDEX", str(demo / "index.json"))
    monkeypatch.setenv("ZOO_REMOTE", demo.as_uri())
    monkeypatch.setenv("ZOO_CACHE_DIR", str(project["base"] / "cache"))
    snn = zoo.load("resnet-mini-digits", "rueckauer2017")
    test = PreparedData(project["repo"] / "data/prepared/digits").test
    # the evaluate stage's images (a seeded subset, not the first 96: with those this only agreed by luck)
    r = zoo.simulate(snn, eval_subset(test, 96), [64], progress=False)
    index = json.loads((demo / "index.json").read_text())
    assert r.accuracy[64] == pytest.approx(index["models"]["resnet-mini-digits"]["variants"]["rueckauer2017"]["accuracy"]["64"])


def test_default_only_publishes_one_checkpoint_and_the_budget_is_enforced(project, monkeypatch, tmp_path):
    """zoos.<zoo>.default_only: the index keeps every variant's figures, only the default variant has a file;
    a zoo over max_mib is refused before anything is written."""
    import zoo
    from zoo import hub
    from zoo.config import load_params
    from zoo.stages.package import package
    from zoo.stages.publish import publish

    repo = project["repo"]
    monkeypatch.chdir(repo)
    p = load_params(repo / "params.yaml")
    out = tmp_path / "published"
    demo = p.zoos["demo"].model_copy(update={"dir": str(out), "default_only": ["resnet-mini-digits"]})
    p = p.model_copy(update={"zoos": {**p.zoos, "demo": demo},
                             "publish": p.publish.model_copy(update={"registry": False})})
    for m in demo.models:
        package(p, "demo", m)
    publish(p, "demo")
    index = json.loads((out / "index.json").read_text())
    entry = index["models"]["resnet-mini-digits"]
    default = entry["default_variant"]
    files = sorted(f.name for f in (out / "resnet-mini-digits").glob("*.safetensors"))
    assert files == [f"{default}.safetensors"]
    assert len(list((out / "vgg-mini-digits").glob("*.safetensors"))) == len(demo.variants)  # not default_only
    other = next(v for v in demo.variants if v != default)
    assert "file" not in entry["variants"][other] and entry["variants"][other]["accuracy"]
    assert entry["variants"][other]["rebuild"] == f"dvc repro convert-demo@resnet-mini-digits-{other}"
    card = (out / "resnet-mini-digits" / "README.md").read_text()
    assert "not published" in card and f"convert-demo@resnet-mini-digits-{other}" in card
    monkeypatch.setenv("ZOO_INDEX", str(out / "index.json"))
    monkeypatch.setenv("ZOO_REMOTE", out.as_uri())
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    assert zoo.load("resnet-mini-digits").zoo_variant == default
    with pytest.raises(hub.NotPublishedError, match=f"{other!r} was measured.*convert-demo@resnet-mini-digits-{other}"):
        zoo.load("resnet-mini-digits", other)
    assert not (tmp_path / "cache" / "resnet-mini-digits" / f"{other}.safetensors").exists()

    # the budget: a model alone over it is refused by its package stage, the zoo over it by publish
    total = sum(f.stat().st_size for f in out.rglob("*.safetensors"))
    vgg = sum(f.stat().st_size for f in (out / "vgg-mini-digits").glob("*.safetensors"))
    tight = demo.model_copy(update={"dir": str(tmp_path / "over"), "max_mib": (total - 1) / 2**20})
    pt = p.model_copy(update={"zoos": {**p.zoos, "demo": tight}})
    for m in demo.models:
        package(pt, "demo", m)
    with pytest.raises(ValueError, match=r"zoos\.demo\.max_mib.*vgg-mini-digits.*Fix: add the largest models"):
        publish(pt, "demo")
    assert not (tmp_path / "over" / "index.json").exists()
    tighter = demo.model_copy(update={"dir": str(tmp_path / "over2"), "max_mib": (vgg - 1) / 2**20})
    with pytest.raises(ValueError, match=r"vgg-mini-digits.*max_mib.*Fix: add vgg-mini-digits to zoos\.demo"):
        package(p.model_copy(update={"zoos": {**p.zoos, "demo": tighter}}), "demo", "vgg-mini-digits")
    assert not (tmp_path / "over2").exists()


def test_two_queued_experiments_share_one_mlflow_store(project):
    repo, env = project["repo"], project["env"]
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("snn-zoo")
    before = len(c.search_runs([exp.experiment_id], filter_string="tags.zoo_variant = 'rueckauer2017'"))
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "demo built"], repo, env)
    for p in ("99.5", "99.7"):  # values no earlier run used: DVC's run-cache would restore those without running
        run(["dvc", "exp", "run", "--queue", "-n", f"p{p.replace('.', '-')}", "-S",
             f"+variants.rueckauer2017.overrides.percentile={p}", "evaluate-demo@vgg-mini-digits-rueckauer2017"],
            repo, env)  # one model's convert + evaluate (publish-demo: both models and packaging, 3x the time)
    run(["dvc", "queue", "start", "-j", "2"], repo, env)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    run(["dvc", "queue", "stop"], repo, env, check=False)
    assert "Failed" not in status, status + run(["dvc", "queue", "logs", "p99-5"], repo, env, check=False).stdout
    assert status.count("Success") == 2, status
    after = c.search_runs([exp.experiment_id], filter_string="tags.zoo_variant = 'rueckauer2017'")
    assert len(after) == before + 2  # one evaluate run per experiment, none lost
    percentiles = {r.data.params.get("percentile") for r in after}
    assert {"99.5", "99.7"} <= percentiles
    # `dvc exp show` compares the experiments by their committed metrics (a gitignored metrics file showed only
    # FileNotFoundError for every experiment)
    metric = "models/eval/demo/vgg-mini-digits/rueckauer2017.json"
    found = {}

    def walk(x):
        if isinstance(x, dict):
            if x.get("name") in ("p99-5", "p99-7") and "data" in x:
                found[x["name"]] = x["data"]["metrics"][metric]
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout))
    assert set(found) == {"p99-5", "p99-7"}, found
    for name, m in found.items():
        assert set(m["data"]["accuracy"]) == {"1", "4", "16", "64"}, (name, m)


def test_a_clone_that_pulls_from_a_dvc_remote_reruns_nothing(project, tmp_path):
    """Build outputs travel through a DVC remote: `dvc push` from the machine that built the zoo, then a fresh
    clone + `dvc pull` has every stage up to date (cached outputs from the remote, metrics, evaluation tables
    and plots from git), so nobody retrains or re-evaluates to continue from a commit."""
    repo, env = project["repo"], project["env"]
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "shared", str(remote)], repo, env)  # .dvc/config.local: not committed
    run(["dvc", "push", "-r", "shared"], repo, env)
    run(["git", "add", "-A"], repo, env)
    if run(["git", "status", "--porcelain"], repo, env).stdout.strip():
        run(["git", "commit", "-qm", "demo built"], repo, env)
    tracked = run(["git", "ls-files", "models/eval", "models/build"], repo, env).stdout.split()
    assert "models/eval/demo/vgg-mini-digits/cao2015.json" in tracked
    assert "models/build/vgg-mini-digits/onnx/parity.json" in tracked
    assert not [f for f in tracked if f.endswith((".safetensors", ".onnx", ".ckpt"))], tracked  # those: DVC's
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run(["dvc", "remote", "add", "--local", "shared", str(remote)], clone, env)
    run(["dvc", "pull", "-r", "shared", "--with-deps", "publish-demo"], clone, env)
    for f in ("models/build/vgg-mini-digits/train/model.safetensors",
              "models/snn/demo/resnet-mini-digits/hu2018.safetensors"):
        assert (clone / f).read_bytes() == (repo / f).read_bytes()
    status = run(["dvc", "status", "--with-deps", "publish-demo"], clone, env).stdout
    assert "up to date" in status, status
    out = run(["dvc", "repro", "publish-demo"], clone, env)
    assert "Running stage" not in out.stdout, out.stdout
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], clone, env).stdout)[""]["data"]
    for f in ("models/eval/demo/resnet-mini-digits/hu2018.json", "models/eval/demo/vgg-mini-digits/cao2015.json"):
        written = json.loads((repo / f).read_text())
        assert metrics[f]["data"] == {k: v for k, v in written.items() if v is not None}  # DVC leaves nulls out
        assert "draws" in written and (written["draws"] is None) == f.endswith("hu2018.json")  # analog; Poisson


def test_package_logs_committed_evaluations_to_an_empty_mlflow_store(project, tmp_path):
    """A fresh clone rebuilds without a DVC cache: `dvc repro` retrains and reconverts (byte-identical), but skips
    the evaluations committed with the lock, so its new MLflow store had no run to browse and `zoo best` failed.
    The package stage logs each variant whose checkpoint has no run from its committed evaluation files."""
    from mlflow.tracking import MlflowClient

    repo, env = project["repo"], dict(project["env"])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'fresh.db'}"
    model = "vgg-mini-digits"
    empty = run(["zoo", "best", model, "--at-T", "16"], repo, env, check=False)
    assert empty.returncode != 0 and "no evaluated variants" in empty.stdout + empty.stderr
    run([sys.executable, "pipeline/package.py", "demo", model], repo, env)
    c = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("snn-zoo")
    children = c.search_runs([exp.experiment_id], filter_string="tags.zoo_kind != 'model'")
    variants = yaml.safe_load((repo / "params.yaml").read_text())["zoos"]["demo"]["variants"]
    assert sorted(r.data.tags["zoo_variant"] for r in children) == sorted(variants)
    for r in children:
        v = r.data.tags["zoo_variant"]
        committed = json.loads((repo / f"models/eval/demo/{model}/{v}.json").read_text())
        assert r.data.tags["zoo_restored_from"] == f"models/eval/demo/{model}/{v}.json"
        assert {int(k[len("accuracy_T"):]): x for k, x in r.data.metrics.items() if k.startswith("accuracy_T")} \
            == {int(t): a for t, a in committed["accuracy"].items()}
        arts = {a.path for a in c.list_artifacts(r.info.run_id, "plots")}
        assert f"plots/{v}-accuracy.png" in arts
    best = run(["zoo", "best", model, "--at-T", "16"], repo, env).stdout
    entry = json.loads((repo / f"models/demo/{model}/entry.json").read_text())
    top = entry["variants"][entry["default_variant"]]["accuracy"]["16"]  # the default: the best at T=16
    assert f"best variant of {model} at T=16: " in best and f"(accuracy {top:.4f}," in best, best
    assert entry["mlflow"]["variant"] == entry["default_variant"]  # the champion registered in the new store
    run([sys.executable, "pipeline/package.py", "demo", model], repo, env)  # a second package logs nothing new
    assert len(c.search_runs([exp.experiment_id], filter_string="tags.zoo_kind != 'model'")) == len(variants)
