"""zoo.hub against a real HTTP server on 127.0.0.1: index, pull/cache/verification, errors, load, CLI."""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from zoo import hub
from zoo.cli import app
from zoo.spiking import DRAWS


# ------------------------------------------------------------------------------------------- fixtures
class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves a directory without logging; appends each GET's path to ``requests``."""

    def __init__(self, *args, requests: list[str], **kwargs) -> None:
        self.requests = requests  # before super().__init__, which handles the request
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


class Server:
    """A ThreadingHTTPServer serving ``root`` (or using ``handler``) on 127.0.0.1, in a thread."""

    def __init__(self, root: Path | None = None, handler=None) -> None:
        self.requests: list[str] = []  # the GETs served from ``root``
        handler = handler or functools.partial(_QuietHandler, directory=str(root), requests=self.requests)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.running = False


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_snn(path: Path, seed: int, arch: str) -> None:
    g = torch.Generator().manual_seed(seed)
    tensors = {"body.0.weight": torch.randn(8, 4, generator=g), "body.0.threshold": torch.rand(8, generator=g)}
    save_file(tensors, str(path), metadata={"snn_zoo": json.dumps({"format": "snn-zoo-snn/1", "arch": arch,
                                                                    "seed": seed})})


def _variant(path: Path, acc: dict[int, float], energy: float) -> dict:
    return {"accuracy": {str(t): a for t, a in acc.items()}, "energy_ratio": energy, "spikes_per_image": 1234.5,
            "synops_per_image": 2.5e6, "test_images": 360, "recipe": {"neuron": "if", "reset": "subtract"},
            "file": path.name, "size": path.stat().st_size, "sha256": _sha(path)}


def make_index(root: Path) -> dict:
    """Two models, three variants, real safetensors files in ``root``."""
    files = {}
    for i, stem in enumerate(["sresnet20-cifar10.hu2018", "sresnet20-cifar10.rueckauer2017", "svgg11-mnist.hu2018"]):
        files[stem] = root / f"{stem}.safetensors"
        _write_snn(files[stem], i, {"sresnet20": "resnet20_cifar", "svgg11-mn": "vgg11_mnist"}[stem[:9]])
    return {
        "schema": 1, "generated": "2026-11-29T00:00:00Z",
        "models": {
            "sresnet20-cifar10": {
                "name": "sresnet20-cifar10", "family": "resnet", "arch": "resnet20_cifar",
                "arch_kwargs": {"num_classes": 10}, "dataset": "cifar10", "input_shape": [3, 32, 32],
                "ann_accuracy": 0.9012, "description": "ResNet-20 on CIFAR-10.", "notes": "",
                "default_variant": "hu2018", "git_commit": "abc123", "params": {"epochs": 2},
                "evaluation": {"test_images": 360, "test_split_images": 10000, "ann_accuracy": 0.9111},
                "variants": {
                    "hu2018": _variant(files["sresnet20-cifar10.hu2018"], {1: 0.1, 2: 0.2, 4: 0.5, 256: 0.9}, 0.31),
                    "rueckauer2017": _variant(files["sresnet20-cifar10.rueckauer2017"],
                                              {1: 0.1, 4: 0.4, 256: 0.89}, 0.4),
                },
            },
            "svgg11-mnist": {
                "name": "svgg11-mnist", "family": "vgg", "arch": "vgg11_mnist", "dataset": "mnist",
                "input_shape": [1, 28, 28], "ann_accuracy": 0.99, "default_variant": "hu2018", "git_commit": "abc123",
                "variants": {"hu2018": _variant(files["svgg11-mnist.hu2018"], {8: 0.97, 16: 0.99}, 0.2)},
            },
        },
    }


@pytest.fixture
def zoo_env(tmp_path, monkeypatch):
    """A served directory with index.json + files, ZOO_INDEX/ZOO_REMOTE/ZOO_CACHE_DIR pointing at it."""
    remote = tmp_path / "remote"
    remote.mkdir()
    index = make_index(remote)
    hub.write_index(index, remote / "index.json")
    server = Server(remote)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_INDEX", str(remote / "index.json"))
    monkeypatch.setenv("ZOO_REMOTE", server.url)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))

    class Env:
        pass

    env = Env()
    env.remote, env.index, env.server, env.cache, env.tmp = remote, index, server, cache, tmp_path
    yield env
    server.stop()


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ------------------------------------------------------------------------------------------------ pull
def test_model_folders_download_into_the_same_layout(zoo_env):
    """The pipeline publishes ``<model>/<variant>.safetensors``; that path is fetched over HTTP and cached as is."""
    index = copy.deepcopy(zoo_env.index)
    folder = zoo_env.remote / "svgg11-mnist"
    folder.mkdir()
    (zoo_env.remote / "svgg11-mnist.hu2018.safetensors").rename(folder / "hu2018.safetensors")
    index["models"]["svgg11-mnist"]["variants"]["hu2018"]["file"] = "svgg11-mnist/hu2018.safetensors"
    hub.write_index(index, zoo_env.remote / "index.json")
    path = hub.pull("svgg11-mnist")
    assert path == zoo_env.cache / "svgg11-mnist" / "hu2018.safetensors"
    assert path.read_bytes() == (folder / "hu2018.safetensors").read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hu2018.safetensors"]  # no temporary file
    zoo_env.server.stop()
    assert hub.pull("svgg11-mnist") == path  # a cache hit needs no network
    path.write_bytes(b"tampered")
    with pytest.raises(hub.RemoteError):  # corrupted cache entry, server down: an error, nothing loaded
        hub.load("svgg11-mnist")
    assert not path.exists()


def test_pull_downloads_and_verifies(zoo_env):
    path = hub.pull("sresnet20-cifar10")
    src = zoo_env.remote / "sresnet20-cifar10.hu2018.safetensors"
    assert path == zoo_env.cache / src.name
    assert path.read_bytes() == src.read_bytes()
    assert _cache_files(zoo_env.cache) == [src.name]  # no temp file left behind
    other = hub.pull("sresnet20-cifar10", "rueckauer2017")
    assert other.name == "sresnet20-cifar10.rueckauer2017.safetensors"
    assert hub.cached_path("sresnet20-cifar10", "rueckauer2017") == other


def test_cache_hit_needs_no_network(zoo_env):
    first = hub.pull("svgg11-mnist")
    zoo_env.server.stop()
    assert hub.pull("svgg11-mnist") == first
    with pytest.raises(hub.RemoteError):  # force really goes to the network ...
        hub.pull("svgg11-mnist", force=True)
    assert _sha(first) == zoo_env.index["models"]["svgg11-mnist"]["variants"]["hu2018"]["sha256"]  # ... and keeps it


def test_force_redownloads(zoo_env):
    get = "/svgg11-mnist.hu2018.safetensors"
    path = hub.pull("svgg11-mnist")
    assert zoo_env.server.requests.count(get) == 1
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime - 10**9, mtime - 10**9))
    assert hub.pull("svgg11-mnist") == path and zoo_env.server.requests.count(get) == 1  # a cache hit
    assert hub.pull("svgg11-mnist", force=True) == path
    assert zoo_env.server.requests.count(get) == 2 and path.stat().st_mtime_ns != mtime - 10**9
    assert _sha(path) == zoo_env.index["models"]["svgg11-mnist"]["variants"]["hu2018"]["sha256"]


def test_tampered_file_is_refused(zoo_env):
    src = zoo_env.remote / "sresnet20-cifar10.hu2018.safetensors"
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    src.write_bytes(bytes(data))
    expected = zoo_env.index["models"]["sresnet20-cifar10"]["variants"]["hu2018"]["sha256"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(hub.ChecksumError) as exc:
        hub.pull("sresnet20-cifar10")
    msg = str(exc.value)
    assert src.name in msg and expected in msg and actual in msg
    assert (exc.value.expected, exc.value.actual) == (expected, actual)
    assert _cache_files(zoo_env.cache) == []


def test_truncated_file_on_the_remote(zoo_env):
    src = zoo_env.remote / "svgg11-mnist.hu2018.safetensors"
    src.write_bytes(src.read_bytes()[:100])
    with pytest.raises(hub.ChecksumError, match="size 100 bytes"):
        hub.pull("svgg11-mnist")
    assert _cache_files(zoo_env.cache) == []


def test_connection_dropped_mid_transfer(zoo_env, monkeypatch):
    class Truncating(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            data = (zoo_env.remote / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection closes

        def log_message(self, *args):
            pass

    server = Server(handler=Truncating)
    monkeypatch.setenv("ZOO_REMOTE", server.url)
    try:
        with pytest.raises(hub.RemoteError, match="truncated"):
            hub.pull("svgg11-mnist")
    finally:
        server.stop()
    assert _cache_files(zoo_env.cache) == []


@pytest.mark.parametrize("stall", ["before_headers", "mid_body"])
def test_a_hanging_server_times_out(stall, zoo_env, monkeypatch):
    """A remote that accepts the connection and then goes silent (before its headers, or half-way through the
    body) fails after ZOO_TIMEOUT seconds with a RemoteError naming the URL; nothing is cached. The handler
    waits at most 10 s, so the server always stops."""
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            data = (zoo_env.remote / self.path.lstrip("/")).read_bytes()
            if stall == "before_headers":
                release.wait(10)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            release.wait(10)

        def log_message(self, *args):
            pass

    server = Server(handler=Hanging)
    monkeypatch.setenv("ZOO_REMOTE", server.url)
    monkeypatch.setenv("ZOO_TIMEOUT", "0.5")
    t0 = time.monotonic()
    try:
        with pytest.raises(hub.RemoteError) as exc:
            hub.pull("svgg11-mnist")
    finally:
        release.set()
        server.stop()
    assert time.monotonic() - t0 < 5
    assert server.url in str(exc.value) and "ZOO_TIMEOUT" in str(exc.value)
    assert ("no answer within 0.5 s" if stall == "before_headers" else "stalled after") in str(exc.value)
    assert _cache_files(zoo_env.cache) == []


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_a_bad_timeout_is_named(value, zoo_env, monkeypatch):
    monkeypatch.setenv("ZOO_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"ZOO_TIMEOUT='{value}'.*seconds > 0"):
        hub.pull("svgg11-mnist")
    assert _cache_files(zoo_env.cache) == []


def test_oversized_download_is_cut_short(zoo_env):
    src = zoo_env.remote / "svgg11-mnist.hu2018.safetensors"
    src.write_bytes(src.read_bytes() + b"\0" * (3 << 20))
    with pytest.raises(hub.ChecksumError, match="first bytes only"):
        hub.pull("svgg11-mnist")
    assert _cache_files(zoo_env.cache) == []


def test_corrupted_cache_is_detected_and_redownloaded(zoo_env, caplog):
    path = hub.pull("svgg11-mnist")
    good = path.read_bytes()
    path.write_bytes(b"garbage" + good[7:])
    with caplog.at_level("WARNING", logger="zoo.hub"):
        assert hub.pull("svgg11-mnist") == path
    assert path.read_bytes() == good
    assert "corrupted" in caplog.text
    # corrupted and the remote down: reported, and the bad file is not kept
    path.write_bytes(good[:-1])
    zoo_env.server.stop()
    with pytest.raises(hub.RemoteError):
        hub.pull("svgg11-mnist")
    assert _cache_files(zoo_env.cache) == []


def test_server_down_is_a_remote_error(zoo_env):
    zoo_env.server.stop()
    with pytest.raises(hub.RemoteError) as exc:
        hub.pull("sresnet20-cifar10")
    assert zoo_env.server.url in str(exc.value) and exc.value.reason
    assert "sresnet20-cifar10.hu2018.safetensors" in exc.value.url
    assert isinstance(exc.value, OSError)
    assert _cache_files(zoo_env.cache) == []


def test_http_error_is_a_remote_error(zoo_env):
    (zoo_env.remote / "svgg11-mnist.hu2018.safetensors").unlink()
    with pytest.raises(hub.RemoteError, match="HTTP 404"):
        hub.pull("svgg11-mnist")
    assert _cache_files(zoo_env.cache) == []


@pytest.mark.parametrize("kind", ["file_url", "path"])
def test_local_remotes(zoo_env, monkeypatch, kind):
    zoo_env.server.stop()
    monkeypatch.setenv("ZOO_REMOTE", zoo_env.remote.as_uri() if kind == "file_url" else str(zoo_env.remote))
    path = hub.pull("sresnet20-cifar10", "rueckauer2017")
    assert path.read_bytes() == (zoo_env.remote / path.name).read_bytes()
    monkeypatch.setenv("ZOO_REMOTE", str(zoo_env.tmp / "nowhere"))
    with pytest.raises(hub.RemoteError, match="nowhere"):
        hub.pull("svgg11-mnist")


@pytest.mark.parametrize("bad", ["model.pt", "model.pkl", "../evil.safetensors", "a/b/x.safetensors",
                                 "/abs/x.safetensors", "sub/../x.safetensors", "./x.safetensors", "sub\\x.safetensors",
                                 "../sub/x.safetensors", ".hidden.safetensors", "model.safetensors.pt"])
def test_only_plain_safetensors_files_are_accepted(zoo_env, bad):
    index = copy.deepcopy(zoo_env.index)
    index["models"]["svgg11-mnist"]["variants"]["hu2018"]["file"] = bad
    with pytest.raises(hub.UnsafeFileError, match="safetensors"):
        hub.pull("svgg11-mnist", index=index)
    (zoo_env.remote / "index.json").write_text(json.dumps(index))
    with pytest.raises(hub.UnsafeFileError, match=r"models\['svgg11-mnist'\].variants\['hu2018'\].file"):
        hub.read_index()
    with pytest.raises(hub.UnsafeFileError):
        hub.write_index(index, zoo_env.tmp / "out.json")
    assert _cache_files(zoo_env.cache) == []


# -------------------------------------------------------------------------------------- index & lookup
def test_unknown_name_suggests_close_names(zoo_env):
    with pytest.raises(hub.ModelNotFoundError) as exc:
        hub.info("sresnet20-cifar")
    assert isinstance(exc.value, KeyError)
    msg = str(exc.value)
    assert "'sresnet20-cifar10'" in msg and "zoo list" in msg
    with pytest.raises(KeyError, match="zoo list"):
        hub.pull("nothing-like-it")
    with pytest.raises(hub.VariantNotFoundError, match="hu2018"):
        hub.pull("sresnet20-cifar10", "hu2019")


def test_measured_but_unpublished_variant(zoo_env):
    """A variant without a file (zoos.<zoo>.default_only) keeps its figures; pulling it names the rebuild."""
    index = copy.deepcopy(zoo_env.index)
    var = index["models"]["sresnet20-cifar10"]["variants"]["rueckauer2017"]
    for k in ("file", "size", "sha256"):
        var.pop(k)
    var["rebuild"] = "dvc repro convert-full@sresnet20-cifar10-rueckauer2017"
    hub.validate_index(index)
    with pytest.raises(hub.NotPublishedError) as exc:
        hub.pull("sresnet20-cifar10", "rueckauer2017", index=index)
    assert isinstance(exc.value, hub.VariantNotFoundError)
    msg = str(exc.value)
    assert "'rueckauer2017' was measured" in msg and "the default is 'hu2018'" in msg
    assert "`dvc repro convert-full@sresnet20-cifar10-rueckauer2017`" in msg
    assert _cache_files(zoo_env.cache) == []
    assert hub.pull("sresnet20-cifar10", index=index).name == "sresnet20-cifar10.hu2018.safetensors"
    row = hub.list_models(index)[0]
    assert row["variants"] == ["hu2018", "rueckauer2017"] and row["published_variants"] == ["hu2018"]
    hub.write_index(index, zoo_env.remote / "index.json")
    out = CliRunner().invoke(app, ["list"])
    assert out.exit_code == 0 and "2 (1 published)" in out.output
    # the default variant must be downloadable; half a file record is malformed
    bad = copy.deepcopy(index)
    bad["models"]["sresnet20-cifar10"]["default_variant"] = "rueckauer2017"
    with pytest.raises(hub.IndexFormatError, match=r"variants\['rueckauer2017'\]\.file.*default variant"):
        hub.validate_index(bad)
    bad = copy.deepcopy(index)
    bad["models"]["sresnet20-cifar10"]["variants"]["rueckauer2017"]["sha256"] = "a" * 64
    with pytest.raises(hub.UnsafeFileError):
        hub.validate_index(bad)


def test_list_models_and_info(zoo_env):
    rows = hub.list_models()
    assert [r["name"] for r in rows] == ["sresnet20-cifar10", "svgg11-mnist"]
    r = rows[0]
    assert (r["best_variant"], r["best_accuracy"], r["best_timesteps"], r["energy_ratio"]) == ("hu2018", 0.9, 256, 0.31)
    assert r["variants"] == ["hu2018", "rueckauer2017"] and r["dataset"] == "cifar10"
    # the SNNs ran on a 360-image subset: the row says so and carries the ANN's accuracy on those images
    assert (r["test_images"], r["ann_accuracy_same_images"], r["ann_accuracy"]) == (360, 0.9111, 0.9012)
    assert (rows[1]["test_images"], rows[1]["ann_accuracy_same_images"]) == (None, 0.99)  # whole split
    entry = hub.info("svgg11-mnist")
    assert entry == zoo_env.index["models"]["svgg11-mnist"]
    entry["dataset"] = "changed"  # a copy
    assert hub.info("svgg11-mnist")["dataset"] == "mnist"


def test_read_index_sources(zoo_env, monkeypatch):
    assert hub.read_index() == zoo_env.index
    assert hub.read_index(zoo_env.remote / "index.json") == zoo_env.index
    assert hub.read_index(f"{zoo_env.server.url}/index.json") == zoo_env.index
    # no ZOO_INDEX and no checkout index: fetched from the remote, cached for offline use
    monkeypatch.delenv("ZOO_INDEX")
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.tmp / "no-checkout" / "models" / "zoo")
    monkeypatch.setattr(hub.locations, "_packaged_zoo_dir", lambda: zoo_env.tmp / "no-package" / "_published" / "zoo")
    assert hub.read_index() == zoo_env.index
    assert (zoo_env.cache / "index.json").is_file()
    zoo_env.server.stop()
    assert hub.read_index() == zoo_env.index
    (zoo_env.cache / "index.json").unlink()
    with pytest.raises(hub.RemoteError):
        hub.read_index()
    monkeypatch.delenv("ZOO_REMOTE")
    with pytest.raises(hub.RemoteError, match="ZOO_REMOTE"):
        hub.read_index()


def test_read_index_defaults_to_the_checkout(zoo_env, monkeypatch):
    monkeypatch.delenv("ZOO_INDEX")
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.remote)
    assert hub.read_index() == zoo_env.index
    assert hub.repo_index_path() == zoo_env.remote / "index.json"


def test_checkout_index_joins_the_other_published_zoos(zoo_env, monkeypatch):
    """From a checkout, models/zoo and every models/zoo-<name> with an index are one zoo: listed together, and a
    model of zoo-large is pulled from its own directory; a name published twice is an error naming both."""
    checkout = zoo_env.tmp / "checkout" / "models"
    full, large = checkout / "zoo", checkout / "zoo-large"
    for d in (full, large, checkout / "demo", checkout / "zoo-empty"):
        d.mkdir(parents=True)
    index = make_index(full)
    big = index["models"].pop("svgg11-mnist")
    hub.write_index(index, full / "index.json")
    (full / "svgg11-mnist.hu2018.safetensors").rename(large / "svgg11-mnist.hu2018.safetensors")
    hub.write_index({"schema": 1, "models": {"svgg11-mnist": big}}, large / "index.json")
    hub.write_index(make_index(checkout / "demo"), checkout / "demo" / "index.json")  # not models/zoo-*: not read
    monkeypatch.delenv("ZOO_INDEX")
    monkeypatch.delenv("ZOO_REMOTE")
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: full)
    assert hub.checkout_zoo_dirs() == [full, large]
    assert [r["name"] for r in hub.list_models()] == ["sresnet20-cifar10", "svgg11-mnist"]
    joined = hub.read_index()
    assert joined["models"]["svgg11-mnist"]["remote"] == large.as_uri()
    assert "remote" not in joined["models"]["sresnet20-cifar10"]
    assert _sha(hub.pull("svgg11-mnist")) == big["variants"]["hu2018"]["sha256"]
    assert hub.pull("sresnet20-cifar10").is_file()
    import zoo.serialization

    monkeypatch.setattr(zoo.serialization, "load_snn", lambda path: nn.Linear(2, 2))
    assert hub.load("svgg11-mnist").zoo_card["remote"] == large.as_uri()
    # ZOO_INDEX names one zoo: only its models
    monkeypatch.setenv("ZOO_INDEX", str(full / "index.json"))
    with pytest.raises(hub.ModelNotFoundError):
        hub.info("svgg11-mnist")
    monkeypatch.delenv("ZOO_INDEX")
    hub.write_index(make_index(large), large / "index.json")  # now both publish sresnet20-cifar10
    with pytest.raises(hub.IndexFormatError, match=r"sresnet20-cifar10.*published twice.*zoo/index\.json.*"
                                                   r"zoo-large/index\.json"):
        hub.read_index()


def test_installed_package_reads_its_shipped_index_with_files_at_the_default_remote(zoo_env, monkeypatch):
    """Without a checkout, the indexes shipped in the package (zoo/_published/<zoo>/index.json, tests/test_wheel.py
    builds the real ones) are joined as the checkout joins its zoos; each model's files are at
    DEFAULT_REMOTE/<its zoo folder> unless ZOO_REMOTE says otherwise; a checkout, and ZOO_INDEX, still win."""
    shipped = zoo_env.tmp / "site-packages" / "zoo" / hub.PACKAGED_DIR
    full, large = shipped / "zoo", shipped / "zoo-large"
    index = copy.deepcopy(zoo_env.index)  # the files stay on the remote: only the indexes ship
    big = index["models"].pop("svgg11-mnist")
    for d, idx in ((full, index), (large, {"schema": 1, "models": {"svgg11-mnist": big}})):
        d.mkdir(parents=True)
        hub.write_index(idx, d / "index.json")
    monkeypatch.delenv("ZOO_INDEX")
    monkeypatch.delenv("ZOO_REMOTE")
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.tmp / "no-checkout" / "models" / "zoo")
    monkeypatch.setattr(hub.locations, "_packaged_zoo_dir", lambda: full)
    assert hub.packaged_zoo_dirs() == [full, large]
    joined = hub.read_index()
    assert {n: {k: v for k, v in e.items() if k != "remote"} for n, e in joined["models"].items()} == \
        dict(index["models"], **{"svgg11-mnist": big})
    assert hub.remote_url(joined, joined["models"]["sresnet20-cifar10"]) == f"{hub.DEFAULT_REMOTE}/zoo"
    assert hub.remote_url(joined, joined["models"]["svgg11-mnist"]) == f"{hub.DEFAULT_REMOTE}/zoo-large"
    assert hub.DEFAULT_REMOTE.startswith("https://")
    assert [r["name"] for r in hub.list_models()] == ["sresnet20-cifar10", "svgg11-mnist"]
    # ZOO_REMOTE overrides the default for every model (here: the flat folder the zoo_env server serves)
    monkeypatch.setenv("ZOO_REMOTE", zoo_env.server.url)
    assert _sha(hub.pull("svgg11-mnist")) == big["variants"]["hu2018"]["sha256"]
    assert hub.read_index() == joined and zoo_env.server.requests == ["/svgg11-mnist.hu2018.safetensors"]
    # a checkout's zoos, and ZOO_INDEX, come before the shipped index
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.remote)
    assert hub.read_index() == zoo_env.index
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.tmp / "no-checkout" / "models" / "zoo")
    monkeypatch.setenv("ZOO_INDEX", str(large / "index.json"))
    assert list(hub.read_index()["models"]) == ["svgg11-mnist"]


def test_remote_resolution_order(zoo_env, monkeypatch):
    index = dict(zoo_env.index, remote="https://example.invalid/zoo")
    assert hub.remote_url(index) == zoo_env.server.url  # the environment wins
    monkeypatch.delenv("ZOO_REMOTE")
    assert hub.remote_url(index) == "https://example.invalid/zoo"
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: zoo_env.remote)
    assert hub.remote_url(zoo_env.index) == zoo_env.remote.as_uri()  # the default: the checkout's models/zoo
    assert hub.pull("svgg11-mnist").is_file()


def test_an_index_read_from_a_path_or_url_serves_its_files_from_there(zoo_env, monkeypatch, tmp_path):
    """Without ZOO_REMOTE and a "remote" field, ZOO_INDEX's own directory is the remote (e.g. models/zoo-large
    picked with ZOO_INDEX), not the checkout's models/zoo."""
    monkeypatch.delenv("ZOO_REMOTE")
    checkout = tmp_path / "checkout-zoo"
    checkout.mkdir()
    monkeypatch.setattr(hub.locations, "_repo_zoo_dir", lambda: checkout)  # holds none of the files
    index = hub.read_index()
    assert index == zoo_env.index
    assert hub.remote_url(index) == zoo_env.remote.as_uri()
    assert hub.remote_url(dict(index)) == checkout.as_uri()  # a plain dict knows no origin
    sha = zoo_env.index["models"]["svgg11-mnist"]["variants"]["hu2018"]["sha256"]
    assert _sha(hub.pull("svgg11-mnist")) == sha
    for p in zoo_env.cache.rglob("*.safetensors"):
        p.unlink()
    monkeypatch.setenv("ZOO_INDEX", f"{zoo_env.server.url}/index.json")  # over HTTP: the server's directory
    assert hub.remote_url(hub.read_index()) == zoo_env.server.url
    assert _sha(hub.pull("svgg11-mnist")) == sha
    named = dict(zoo_env.index, remote="https://example.invalid/zoo")  # a "remote" field still wins
    hub.write_index(named, zoo_env.remote / "index.json")
    monkeypatch.setenv("ZOO_INDEX", str(zoo_env.remote / "index.json"))
    assert hub.remote_url(hub.read_index()) == "https://example.invalid/zoo"


def test_bad_index_json_is_a_clear_error(zoo_env):
    (zoo_env.remote / "index.json").write_text("{not json")
    with pytest.raises(hub.IndexFormatError, match="index.json: not valid JSON"):
        hub.read_index()


def test_write_index_is_validating_and_atomic(zoo_env, monkeypatch):
    out = zoo_env.tmp / "pub" / "index.json"
    hub.write_index(zoo_env.index, out)
    text = out.read_text()
    assert json.loads(text) == zoo_env.index
    assert text.index('"generated"') < text.index('"models"') < text.index('"schema"')  # sorted keys
    assert hub.read_index(out) == zoo_env.index

    cases = [
        (("models", "svgg11-mnist", "variants", "hu2018", "sha256"), "nope",
         r"models\['svgg11-mnist'\]\.variants\['hu2018'\]\.sha256"),
        (("models", "svgg11-mnist", "variants", "hu2018", "size"), None, r"variants\['hu2018'\]\.size"),
        (("models", "svgg11-mnist", "variants", "hu2018", "accuracy", "x"), 0.5, r"accuracy\['x'\]"),
        (("models", "svgg11-mnist", "default_variant"), "other", r"svgg11-mnist'\]\.default_variant"),
        (("models", "svgg11-mnist", "name"), "other", r"svgg11-mnist'\]\.name"),
        (("models", "svgg11-mnist", "arch"), None, r"svgg11-mnist'\]\.arch"),
        (("models", "svgg11-mnist", "ann_accuracy"), "high", r"svgg11-mnist'\]\.ann_accuracy"),
        (("models", "svgg11-mnist", "variants"), {}, r"svgg11-mnist'\]\.variants"),
        (("schema",), 2, r"index\.schema"),
    ]
    for keys, value, pattern in cases:
        bad = copy.deepcopy(zoo_env.index)
        node = bad
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        with pytest.raises(hub.IndexFormatError, match=pattern):
            hub.write_index(bad, out)
        assert out.read_text() == text  # untouched

    nan = copy.deepcopy(zoo_env.index)  # NaN/inf are not JSON: written as null
    nan["models"]["svgg11-mnist"]["variants"]["hu2018"]["energy_ratio"] = float("nan")
    nan["models"]["svgg11-mnist"]["variants"]["hu2018"]["energy_ratio_per_T"] = {"8": float("inf")}
    nan_out = zoo_env.tmp / "nan" / "index.json"
    hub.write_index(nan, nan_out)
    var = hub.read_index(nan_out)["models"]["svgg11-mnist"]["variants"]["hu2018"]
    assert var["energy_ratio"] is None and var["energy_ratio_per_T"] == {"8": None}
    assert math.isnan(nan["models"]["svgg11-mnist"]["variants"]["hu2018"]["energy_ratio"])  # caller's dict kept

    bad = copy.deepcopy(zoo_env.index)
    bad["models"]["svgg11-mnist"]["params"] = {"x": {1, 2}}  # not JSON
    with pytest.raises(hub.IndexFormatError, match="JSON"):
        hub.write_index(bad, out)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    changed = dict(zoo_env.index, generated="2030-01-01T00:00:00Z")
    with pytest.raises(OSError, match="disk full"):
        hub.write_index(changed, out)
    monkeypatch.undo()
    assert out.read_text() == text
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.json"]  # no temp file left


# ------------------------------------------------------------------------------------------------ load
def test_load_passes_the_verified_path_to_load_snn(zoo_env, monkeypatch):
    import zoo
    import zoo.serialization

    seen = []

    def fake_load_snn(path):
        path = Path(path)
        seen.append(path)
        assert _sha(path) == zoo_env.index["models"]["sresnet20-cifar10"]["variants"]["rueckauer2017"]["sha256"]
        return nn.Linear(2, 2)

    monkeypatch.setattr(zoo.serialization, "load_snn", fake_load_snn)
    snn = zoo.load("sresnet20-cifar10", "rueckauer2017")
    assert seen == [zoo_env.cache / "sresnet20-cifar10.rueckauer2017.safetensors"]
    assert isinstance(snn, nn.Module)
    assert snn.zoo_card == zoo_env.index["models"]["sresnet20-cifar10"]
    assert snn.zoo_variant == "rueckauer2017"
    # a corrupted cached file is never handed to load_snn
    seen[0].write_bytes(b"x" * seen[0].stat().st_size)
    zoo_env.server.stop()
    with pytest.raises(hub.RemoteError):
        hub.load("sresnet20-cifar10", "rueckauer2017")
    assert len(seen) == 1


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_list(zoo_env):
    runner = CliRunner()
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "sresnet20-cifar10" in result.output and "svgg11-mnist" in result.output
    assert "90.00% (T=256)" in result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if "-cifar10" in line or "-mnist" in line}
    assert "360" in lines["sresnet20-cifar10"] and "91.11%" in lines["sresnet20-cifar10"]
    assert "90.12%" not in lines["sresnet20-cifar10"]  # not the whole-split ANN beside a subset SNN
    assert "99.00%" in lines["svgg11-mnist"]
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0
    assert [r["name"] for r in json.loads(result.stdout)] == ["sresnet20-cifar10", "svgg11-mnist"]


def test_cli_info(zoo_env):
    runner = CliRunner()
    result = runner.invoke(app, ["info", "sresnet20-cifar10"])
    assert result.exit_code == 0, result.output
    assert "# sresnet20-cifar10" in result.output and "T=256" in result.output and "abc123" in result.output
    result = runner.invoke(app, ["info", "svgg11-mnist", "--json"])
    assert json.loads(result.stdout)["dataset"] == "mnist"
    result = runner.invoke(app, ["info", "svgg11"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no model 'svgg11'") and "svgg11-mnist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_cli_pull(zoo_env):
    runner = CliRunner()
    result = runner.invoke(app, ["pull", "sresnet20-cifar10", "--variant", "rueckauer2017"])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == zoo_env.cache / "sresnet20-cifar10.rueckauer2017.safetensors" and path.is_file()
    assert runner.invoke(app, ["pull", "sresnet20-cifar10", "-v", "rueckauer2017", "--force"]).exit_code == 0
    zoo_env.server.stop()
    result = runner.invoke(app, ["pull", "svgg11-mnist"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot fetch http://127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    result = runner.invoke(app, ["pull", "sresnet20-cifar10", "--variant", "nope"])
    assert result.exit_code == 1 and "has no variant 'nope'" in result.stderr


def test_test_data_normalizes_as_the_pipeline_did(tmp_path):
    """zoo.test_data gives the images the pipeline's PreparedData gives, from the index's input record."""
    from zoo.data import PreparedData, prepare

    prepare("digits", tmp_path / "prep", calib_size=16, progress=False)
    prepared = PreparedData(tmp_path / "prep")
    entry = {"name": "m", "arch": "a", "dataset": "digits", "default_variant": "v",
             "variants": {"v": {"file": "m.v.safetensors", "sha256": "0" * 64, "size": 1}},
             "input": {"source": "digits", "mean": prepared.mean, "std": prepared.std, "scale": 1.0}}
    index = {"schema": 1, "models": {"m": entry}}
    data = hub.test_data("m", index=index)
    x_ref, y_ref = prepared.test.tensors
    assert len(data) == len(x_ref) == 360
    for i in (0, 17, 359):
        x, y = data[i]
        assert torch.allclose(x, x_ref[i], atol=1e-5) and y == int(y_ref[i])
    del entry["input"]
    with pytest.raises(hub.IndexFormatError, match="no input normalization"):
        hub.test_data("m", index=index)


# ----------------------------------------------------------------------------------------- zoo evaluate
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


@pytest.mark.slow
@pytest.mark.skipif(not (DEMO / "index.json").is_file(), reason="models/demo is not published")
def test_cli_evaluate_over_two_ddp_processes_matches_one(tmp_path, monkeypatch):
    """`zoo evaluate --devices 2` (Lightning DDP, 2 CPU processes) measures what one process does, and still
    compares with the index: Poisson input (the counter-based draws do not depend on the shard; analog input
    under DDP is tests/test_evaluation.py's)."""
    monkeypatch.delenv("ZOO_REMOTE", raising=False)
    monkeypatch.setenv("ZOO_INDEX", str(DEMO / "index.json"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    args = ["evaluate", "vgg-mini-digits", "-v", "cao2015", "-n", "101", "-t", "4,16", "--json"]
    one, two = (runner.invoke(app, args + extra) for extra in ([], ["--devices", "2"]))
    assert one.exit_code == 0 and two.exit_code == 0, (one.output, two.output)
    one, two = json.loads(one.stdout), json.loads(two.stdout)
    assert two["images"] == one["images"] == 101
    for a, b in zip(one["rows"], two["rows"]):
        assert (a["T"], a["accuracy"], a["index"], a["agrees"]) == (b["T"], b["accuracy"], b["index"], b["agrees"])
        assert b["spikes_per_image"] == pytest.approx(a["spikes_per_image"], rel=1e-5)
    bad = runner.invoke(app, ["evaluate", "vgg-mini-digits", "--devices", "0"])
    assert bad.exit_code == 2 and "--devices" in bad.output and "greater than or equal to 1" in bad.output, bad.output


def test_binomial_tolerance():
    assert hub.binomial_tolerance(0.5, 100) == pytest.approx(3 * 0.05 + 0.01)
    assert hub.binomial_tolerance(1.0, 10_000) == pytest.approx(3 * 1e-4 + 1e-4)  # a claim of 100 %: a margin
    assert hub.binomial_tolerance(0.9, 1000) < hub.binomial_tolerance(0.9, 300)


def test_replay_tolerance():
    assert hub.replay_tolerance(300) == 3 / 300 and hub.replay_tolerance(360) == 4 / 360
    assert hub.replay_tolerance(10_000) == 100 / 10_000 and hub.replay_tolerance(50) == 3 / 50
    assert hub.replay_tolerance(300) < hub.binomial_tolerance(0.9, 300) / 5


@pytest.mark.skipif(not (DEMO / "index.json").is_file(), reason="models/demo is not published")
def test_cli_evaluate_remeasures_a_published_model(tmp_path, monkeypatch):
    """`zoo evaluate` simulates the published demo model on the real digits test split and compares with its
    index; a claim that the checkpoint does not reproduce fails with exit code 1."""
    monkeypatch.delenv("ZOO_REMOTE", raising=False)
    monkeypatch.setenv("ZOO_INDEX", str(DEMO / "index.json"))  # its files: next to it (models/demo)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    entry = json.loads((DEMO / "index.json").read_text())["models"]["vgg-mini-digits"]
    variant = entry["default_variant"]
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "vgg-mini-digits", "-t", "16,32", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert (r["variant"], r["images"], r["same_images"], r["tolerance_kind"]) == (variant, 360, True, "replay")
    assert r["ann_accuracy"] == entry["evaluation"]["ann_accuracy"]
    assert [row["T"] for row in r["rows"]] == [16, 32]
    for row in r["rows"]:
        assert row["index"] == entry["variants"][variant]["accuracy"][str(row["T"])] and row["agrees"] is True
        assert row["tolerance"] == 4 / 360  # the index's own images, analog input: deterministic
    # fewer images: part of the index's, its claims compared within the tolerance of 50 images; no ANN reference
    sub = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "-n", "50", "-t", "32", "--json"]).stdout)
    assert (sub["images"], sub["same_images"], sub["subset_of_index"], sub["ann_accuracy"]) == (50, False, True, None)
    assert sub["tolerance_kind"] == "binomial"  # 50 of the 360: a sample of them
    row = sub["rows"][0]
    assert row["index"] == entry["variants"][variant]["accuracy"]["32"] and row["agrees"] is True
    assert row["tolerance"] == pytest.approx(hub.binomial_tolerance(row["index"], 50))
    text = runner.invoke(app, ["evaluate", "vgg-mini-digits", "-n", "50", "-t", "32"])
    assert text.exit_code == 0 and "50 of the 360 test images, part of the index's 360" in text.output, text.output
    # an index whose claim the checkpoint does not reproduce
    index = json.loads((DEMO / "index.json").read_text())
    acc = index["models"]["vgg-mini-digits"]["variants"][variant]["accuracy"]
    acc["32"] = 0.5
    hub.write_index(index, tmp_path / "index.json")
    monkeypatch.setenv("ZOO_INDEX", str(tmp_path / "index.json"))
    monkeypatch.setenv("ZOO_REMOTE", str(DEMO))
    bad = runner.invoke(app, ["evaluate", "vgg-mini-digits", "-t", "32"])
    assert bad.exit_code == 1
    assert "50.00%" in bad.output and "NO" in bad.output and "beyond the replay tolerance" in bad.output
    # 7 images off on the index's own 360 images: within the binomial tolerance, but not a replay
    acc["32"] = r["rows"][1]["accuracy"] - 7 / 360
    assert acc["32"] + hub.binomial_tolerance(acc["32"], 360) > r["rows"][1]["accuracy"]
    hub.write_index(index, tmp_path / "index.json")
    assert runner.invoke(app, ["evaluate", "vgg-mini-digits", "-t", "32"]).exit_code == 1
    # Poisson input drawn as this code draws (the index's "draws"): deterministic on the index's images, a replay
    cao = index["models"]["vgg-mini-digits"]["variants"]["cao2015"]
    assert cao["draws"] == DRAWS
    poisson = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "--variant", "cao2015", "-t", "4",
                                             "--json"]).stdout)
    assert (poisson["same_images"], poisson["tolerance_kind"]) == (True, "replay") and poisson["rows"][0]["agrees"]
    # figures from other draws (no "draws": the full zoo's predate the counter-based ones) are a sample: binomial
    for other in ({}, {"draws": "some-older-generator"}):
        cao.pop("draws")
        cao.update(other)
        hub.write_index(index, tmp_path / "index.json")
        poisson = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "--variant", "cao2015", "-t", "4",
                                                 "--json"]).stdout)
        assert poisson["tolerance_kind"] == "binomial" and poisson["rows"][0]["agrees"], (other, poisson)
        cao["draws"] = DRAWS
    # an index measured on a subset: `-n all` compares with the ANN on the whole split, not with the claims
    e = index["models"]["vgg-mini-digits"]
    e["evaluation"].update(test_images=100, ann_accuracy=0.25)
    hub.write_index(index, tmp_path / "index.json")
    whole = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "-n", "all", "-t", "4", "--json"]).stdout)
    assert (whole["images"], whole["same_images"], whole["ann_accuracy"]) == (360, False, e["ann_accuracy"])
    assert whole["rows"][0]["index"] is None
    own = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "-t", "4", "--json"]).stdout)
    assert (own["images"], own["same_images"], own["ann_accuracy"]) == (100, True, 0.25)
    # more images than the index's 100 are not all among them: no claim to compare
    more = runner.invoke(app, ["evaluate", "vgg-mini-digits", "-n", "200", "-t", "4"])
    assert more.exit_code == 0, more.output
    assert "measured on 100: no claim to compare" in more.output
    more = json.loads(runner.invoke(app, ["evaluate", "vgg-mini-digits", "-n", "200", "-t", "4", "--json"]).stdout)
    assert (more["subset_of_index"], more["rows"][0]["index"], more["rows"][0]["agrees"]) == (False, None, None)
    assert runner.invoke(app, ["evaluate", "vgg-mini-digits", "-t", "x"]).exit_code == 2
    missing = runner.invoke(app, ["evaluate", "vgg-mini-digit"])
    assert missing.exit_code == 1 and "did you mean 'vgg-mini-digits'" in missing.output
