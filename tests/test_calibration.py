"""Activation statistics (zoo.conversion.calibration): the observers' memory stays constant while streaming,
the streaming percentile matches an exact quantile, and ActivationStats files round-trip byte for byte."""
from __future__ import annotations

import pytest
import torch

from zoo.conversion import ActivationStats, calibrate, canonicalize
from zoo.conversion.calibration import ActivationObserver
from zoo.conversion.graph import act_points


def test_calibration_memory_does_not_grow_with_images(digits_cnn, digits):
    xtr = digits[0]
    gm = canonicalize(digits_cnn)
    small = calibrate(gm, torch.utils.data.DataLoader(xtr[:64], batch_size=64), progress=False)
    # measure the observers' memory while streaming 20x more images
    sizes = []
    obs = {n: ActivationObserver() for n in act_points(gm)}
    for n, p in act_points(gm).items():
        p.observer = obs[n]
    with torch.no_grad():
        for i in range(0, 20 * 64, 64):
            gm(xtr[i % (len(xtr) - 64):][:64])
            sizes.append(sum(o.state_bytes() for o in obs.values()))
    for p in act_points(gm).values():
        p.observer = None
    big = calibrate(gm, torch.utils.data.DataLoader(xtr, batch_size=64), progress=False)
    assert len(set(sizes)) == 1, sizes  # constant from the first batch on
    assert small.state_bytes() == big.state_bytes()
    # and the streaming percentile is right: compare with an exact quantile over all positive values
    acts = {}
    hooks = [p.register_forward_hook(lambda m, i, o, n=n: acts.setdefault(n, []).append(o.detach()))
             for n, p in act_points(gm).items()]
    with torch.no_grad():
        for i in range(0, len(xtr), 64):
            gm(xtr[i:i + 64])
    for h in hooks:
        h.remove()
    for name in list(acts)[:3]:
        v = torch.cat([a.flatten() for a in acts[name]])
        v = v[v > 0]
        exact = torch.quantile(v[torch.randperm(len(v))[:1_000_000]], 0.999).item() if len(v) > 1_000_000 else \
            torch.quantile(v, 0.999).item()
        assert big[name].percentile(99.9).item() == pytest.approx(exact, rel=0.01)
        assert big[name].max == pytest.approx(v.max().item())


def test_stats_save_load_roundtrip(tmp_path, digits_cnn, digits):
    stats = calibrate(canonicalize(digits_cnn), digits[0][:200], progress=False)
    path = stats.save(tmp_path / "stats.safetensors")
    again = ActivationStats.load(path)
    assert set(again) == set(stats)
    for n in stats:
        assert torch.equal(again[n].percentile(99.9, True), stats[n].percentile(99.9, True))
        assert again[n].count == stats[n].count > 0
    assert not list(tmp_path.glob(".*tmp"))
    # the same statistics give the same bytes (DVC hashes the file: other bytes would rerun every convert)
    for i in range(3):
        assert again.save(tmp_path / f"again{i}.safetensors").read_bytes() == path.read_bytes()
    # files of the first format (counts in the metadata, several keys) still load
    from safetensors.torch import load_file, save_file

    meta = {"format": "snn-zoo-activation-stats/1", **{f"{n}/count": str(s.count) for n, s in stats.items()}}
    save_file({k: v for k, v in load_file(str(path)).items() if not k.endswith("/count")},
              str(tmp_path / "v1.safetensors"), metadata=meta)
    v1 = ActivationStats.load(tmp_path / "v1.safetensors")
    assert {n: s.count for n, s in v1.items()} == {n: s.count for n, s in stats.items()}
