"""SNN evaluation under Lightning: DDP over 2 CPU processes gives exactly the one-process result, for analog
and for Poisson input (whose draws are counter-based per image, so sharding does not change them)."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo.evaluation import evaluate_snn


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["rueckauer2017", "cao2015"])
def test_ddp_two_processes_match_one_process(variant, digits_cnn, digits):
    xtr, _, xte, yte = digits
    snn = zoo.convert(digits_cnn, xtr[:256], variant, progress=False)
    ds = torch.utils.data.TensorDataset(xte[:101], yte[:101])  # odd count: shards of 51 and 50, no padding
    one = evaluate_snn(snn, ds, [4, 32], batch_size=32, progress=False)
    two = evaluate_snn(snn, ds, [4, 32], batch_size=32, devices=2, progress=False)
    ref = zoo.simulate(snn, ds, [4, 32], batch_size=32, progress=False)
    assert one.images == two.images == ref.images == 101
    assert one.accuracy == two.accuracy == ref.accuracy
    assert two.spikes_per_image == pytest.approx(ref.spikes_per_image)
    assert two.synops_per_image == pytest.approx(ref.synops_per_image)
    assert two.ann_macs_per_image == ref.ann_macs_per_image


def test_eval_subset_is_fixed_balanced_and_ordered():
    from torch.utils.data import TensorDataset

    from zoo.evaluation import eval_subset

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, like an image folder
    ds = TensorDataset(torch.arange(1000).float(), labels)
    a, b = eval_subset(ds, 200), eval_subset(ds, 200)
    assert a.indices == b.indices and len(a) == 200
    assert a.indices == sorted(a.indices) and len(set(a.indices)) == 200
    counts = torch.bincount(labels[a.indices], minlength=10)
    assert counts.min() >= 8, counts  # every class present (the first 200 would be two classes)
    assert eval_subset(ds, None) is ds and eval_subset(ds, 5000) is ds
    assert eval_subset(ds, 100).indices != a.indices[:100]
    # nested: a smaller subset is part of a larger one (zoo evaluate -n compares it with the index's claims)
    assert set(eval_subset(ds, 100).indices) < set(a.indices) < set(eval_subset(ds, 999).indices)
    with pytest.raises(ValueError, match="n > 0"):
        eval_subset(ds, 0)
