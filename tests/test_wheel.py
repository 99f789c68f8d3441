"""snn-zoo as `pip install` gives it: the wheel is built, installed into a fresh venv outside the checkout, and
`zoo list`, `zoo pull` and `zoo.load` run there from the index shipped in the package, the files served over
loopback HTTP through ZOO_REMOTE; without ZOO_REMOTE the files' remote is the documented default. The shipped
index is the checkout's published one, byte for byte (copied by setup.py when the wheel is built).

Nothing is downloaded: the build uses this venv's setuptools (--no-build-isolation; torch requires >= 77.0.3,
which pyproject's license field needs), the new venv sees this venv's site-packages for the dependencies through
a .pth file (a plain path line: the editable install's own .pth files there are not run, so `import zoo` can
only find the wheel), and pip installs with --no-index. The build works on a copy of what it reads, so that
setuptools' build/ and *.egg-info land there and not in the checkout."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zoo import hub

ROOT = Path(__file__).resolve().parents[1]
SMALL = "diehl-convnet-mnist"  # the smallest published model (60 KB per checkpoint)
PLAIN = "low-latency"  # a variant of it that holds its ANN (zoo.load(..., ann=True))
TIMEOUT = 180  # seconds per subprocess (each takes a few)


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from the checkout's files, installed into a fresh venv outside the checkout."""
    from importlib.metadata import version

    assert int(version("setuptools").split(".")[0]) >= 77, "the build needs setuptools >= 77 in this venv"
    tmp = tmp_path_factory.mktemp("wheel")
    # what a build reads (the sdist carries the same: MANIFEST.in), copied so that setuptools writes its build/
    # and *.egg-info there and not in the checkout, whose stale build/lib would end up in the wheel
    src = tmp / "src"
    shutil.copytree(ROOT / "zoo", src / "zoo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_published"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for index in ROOT.glob("models/*/index.json"):  # all of them: the build picks the published zoos
        (src / index.parent.relative_to(ROOT)).mkdir(parents=True)
        shutil.copy2(index, src / index.relative_to(ROOT))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src])
    wheels = list((tmp / "dist").glob("snn_zoo-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheels[0]])
    # the dependencies from this venv, added after the install so that pip saw a bare venv
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "checkout-venv-deps.pth").write_text("".join(f"{d}\n" for d in deps))
    work = tmp / "work"  # the cwd of every command: outside the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "ZOO_INDEX", "ZOO_REMOTE")}
    env.update(PYTHONNOUSERSITE="1", ZOO_TIMEOUT="30", ZOO_CACHE_DIR=str(tmp / "cache"))
    return {"wheel": wheels[0], "python": python, "zoo": venv / "bin" / "zoo", "work": work, "env": env,
            "tmp": tmp, "venv": venv}


@contextlib.contextmanager
def _served(directory: Path):
    """``directory`` over HTTP on 127.0.0.1 for the duration of the block; yields (url, paths requested)."""
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _without_remotes(index: dict) -> dict:
    return {name: {k: v for k, v in e.items() if k != "remote"} for name, e in index["models"].items()}


def _zoo_of() -> dict[str, str]:
    """model name -> the checkout's zoo folder that publishes it."""
    return {name: d.name for d in hub.checkout_zoo_dirs()
            for name in json.loads((d / "index.json").read_text())["models"]}


def test_the_wheel_ships_the_published_indexes_byte_for_byte(installed):
    """The wheel holds the package and, as zoo/_published/<zoo>/index.json, every index the checkout joins
    (models/zoo, models/zoo-<name>), identical to the checkout's; not the demo's, no checkpoint, no models/."""
    with zipfile.ZipFile(installed["wheel"]) as whl:
        names = whl.namelist()
        shipped = {n.split("/")[2]: whl.read(n) for n in names if n.startswith(f"zoo/{hub.PACKAGED_DIR}/")}
    zoos = hub.checkout_zoo_dirs()
    assert [d.name for d in zoos][:1] == ["zoo"] and len(zoos) >= 2
    assert sorted(shipped) == sorted(d.name for d in zoos)
    for d in zoos:
        assert shipped[d.name] == (d / "index.json").read_bytes(), f"zoo/{hub.PACKAGED_DIR}/{d.name}/index.json " \
                                                                     f"differs from {d / 'index.json'}"
    assert all(n.endswith("/index.json") for n in names if n.startswith(f"zoo/{hub.PACKAGED_DIR}/"))
    others = [n for n in names if not n.endswith(".py") and not n.startswith(("snn_zoo-", f"zoo/{hub.PACKAGED_DIR}/"))]
    assert others == [] and not any(n.startswith("models/") for n in names)


def test_installed_index_is_the_checkouts_with_the_documented_default_remote(installed):
    """In the venv, without ZOO_REMOTE: `zoo` is the wheel's (no checkout beside it), its index is the checkout's
    joined index, and each model's files come from DEFAULT_REMOTE/<its zoo folder>, the URL the docs name."""
    script = """if True:
        import json, zoo
        from zoo import hub
        index = hub.read_index()
        print(json.dumps({"file": zoo.__file__, "checkout": hub.repo_index_path().exists(),
                          "default": hub.DEFAULT_REMOTE, "models": index["models"],
                          "remotes": {n: hub.remote_url(index, e) for n, e in index["models"].items()}}))
    """
    out = json.loads(_run([installed["python"], "-c", script], cwd=installed["work"], env=installed["env"]).stdout)
    assert Path(out["file"]).is_relative_to(installed["venv"]) and not out["checkout"], out["file"]
    assert _without_remotes(out) == _without_remotes(hub.read_index())
    assert out["default"] == hub.DEFAULT_REMOTE == "https://github.com/snn-zoo/snn-zoo/raw/main/models"
    assert f"`{hub.DEFAULT_REMOTE}/`" in (ROOT / "docs" / "using-the-zoo.md").read_text()
    assert out["remotes"] == {n: f"{hub.DEFAULT_REMOTE}/{z}" for n, z in _zoo_of().items()}


def test_installed_zoo_lists_pulls_and_loads_over_http(installed):
    """`zoo list`, `zoo pull` and `zoo.load` in the venv, the files from the checkout's models/ served on
    127.0.0.1 (ZOO_REMOTE): the pulled file's sha256 is the index's, and the loaded SNN computes on a batch what
    the checkout's own checkpoint computes."""
    import torch

    from zoo import simulate
    from zoo.conversion.ann import ann_from_snn
    from zoo.serialization import load_snn

    index = hub.read_index()
    var = index["models"][SMALL]["variants"][index["models"][SMALL]["default_variant"]]
    with _served(ROOT / "models") as (url, requests):
        env = dict(installed["env"], ZOO_REMOTE=f"{url}/{_zoo_of()[SMALL]}")
        listed = _run([installed["zoo"], "list"], cwd=installed["work"], env=env).stdout
        assert f"snn-zoo: {len(index['models'])} models" in listed
        assert all(name in listed for name in index["models"]), listed
        path = Path(_run([installed["zoo"], "pull", SMALL], cwd=installed["work"], env=env).stdout.strip())
        assert path.is_relative_to(installed["tmp"] / "cache")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == var["sha256"]
        assert requests == [f"/zoo/{var['file']}"]
        script = """if True:
            import json, sys, torch, zoo
            snn = zoo.load(sys.argv[1])
            ann = zoo.load(sys.argv[1], sys.argv[2], ann=True)
            x = torch.rand(16, *snn.zoo_card["input_shape"], generator=torch.Generator().manual_seed(0))
            y = ann(x).argmax(1)
            r = zoo.simulate(snn, (x, y), timesteps=[8, 32], progress=False)
            print(json.dumps({"sha256": snn.zoo_sha256, "variant": snn.zoo_variant, "labels": y.tolist(),
                              "agree": r.accuracy, "spikes": r.spikes_per_image}))
        """
        env["ZOO_CACHE_DIR"] = str(installed["tmp"] / "cache-load")  # downloaded again, by zoo.load
        out = _run([installed["python"], "-c", script, SMALL, PLAIN], cwd=installed["work"], env=env)
        out = json.loads(out.stdout)
        assert requests == [f"/zoo/{var['file']}"] * 2 + [f"/zoo/{SMALL}/{PLAIN}.safetensors"]
    assert (out["sha256"], out["variant"]) == (var["sha256"], index["models"][SMALL]["default_variant"])
    # the same batch through the checkout's checkpoint
    snn = load_snn(ROOT / "models" / "zoo" / var["file"])
    x = torch.rand(16, *index["models"][SMALL]["input_shape"], generator=torch.Generator().manual_seed(0))
    y = ann_from_snn(load_snn(ROOT / "models" / "zoo" / SMALL / f"{PLAIN}.safetensors"))(x).argmax(1)
    assert y.tolist() == out["labels"]
    r = simulate(snn, (x, y), timesteps=[8, 32], progress=False)
    assert out["agree"] == pytest.approx({str(t): a for t, a in r.accuracy.items()})
    assert out["spikes"] == pytest.approx({str(t): s for t, s in r.spikes_per_image.items()}, rel=1e-6)
    assert out["spikes"]["32"] > 0
