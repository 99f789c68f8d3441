"""Re-measuring the published claims: a published model (:func:`zoo.hub.load`) simulated again on its real test
split (:func:`test_data`) and compared with its index entry within :func:`replay_tolerance` or
:func:`binomial_tolerance` (:func:`remeasure`, what ``zoo evaluate`` and the CI re-check run).

The evaluation itself is :mod:`zoo.evaluation`'s; these are re-exported by :mod:`zoo.hub`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zoo.hub.cache import load
from zoo.hub.catalog import ann_reference, get_entry, index_or_read, published_variant
from zoo.hub.errors import IndexFormatError
from zoo.hub.index import read_index

__all__ = ["test_data", "NormalizedDataset", "binomial_tolerance", "replay_tolerance", "remeasure"]


def NormalizedDataset(base, mean: list[float], std: list[float], scale: float = 1.0):
    """:class:`zoo.data.NormalizedDataset` (torch is imported on first use, not with :mod:`zoo.hub`)."""
    from zoo.data import NormalizedDataset as _Normalized

    return _Normalized(base, mean, std, scale)


def test_data(name: str, root: str | Path | None = None, download: bool = False, index: dict | None = None):
    """The test split of model ``name``'s dataset, normalized as the model was trained: ready for
    :func:`zoo.simulate`. Read with :func:`zoo.data.load_dataset` (``root``: the data root, default
    ``$ZOO_DATA_DIR`` else ``./data/raw``; ``download``: fetch MNIST / CIFAR-10 when online); the scale, mean
    and std come from the index entry's ``input`` record."""
    entry = get_entry(index_or_read(index), name)
    spec = entry.get("input") or {}
    if not all(k in spec for k in ("source", "mean", "std")):
        raise IndexFormatError(f"model {name!r}: its index entry has no input normalization ('input': source, "
                               "mean, std); republish it with a current snn-zoo (`dvc repro package-<zoo>@<model>`)")
    from zoo.data import load_dataset

    return NormalizedDataset(load_dataset(spec["source"], "test", root, download), spec["mean"], spec["std"],
                             float(spec.get("scale", 1.0)))


def binomial_tolerance(p: float, n: int, sigmas: float = 3.0) -> float:
    """How far an accuracy measured again on ``n`` images may lie from a claimed ``p``: ``sigmas`` binomial
    standard errors (from a variance of at least 1e-4, so a claim of 100 % keeps a margin) plus one image.
    Used by ``zoo evaluate`` and the CI re-check of the published claims."""
    return sigmas * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1 / n


def replay_tolerance(n: int) -> float:
    """How far a deterministic SNN (analog input) re-simulated on exactly the ``n`` images of its claim may
    lie from it: 3 images or 1 %, whichever is more. Only the platform's floating-point kernels differ, which
    can flip an image whose top two classes nearly tie (replaying the published default variants on
    another CPU left 0 or 1 image off, of 300 or 360)."""
    return max(3, math.ceil(0.01 * n)) / n


def _images(test_images: int | str | None, evaluated: int, split: int) -> int:
    """How many test images to simulate (see :func:`remeasure`'s ``test_images``)."""
    if test_images is None:
        return min(evaluated, split)
    if test_images == "all":
        return split
    n = int(test_images)
    if not 0 < n:
        raise ValueError(f"test_images must be a positive number of images or 'all', got {test_images!r}")
    return min(n, split)


def _ann_on(entry: dict, n: int, split: int, indexed: int) -> tuple[float | None, int | None]:
    """The ANN's accuracy on the same ``n`` images and their number, when the index knows it."""
    if n == indexed:
        return ann_reference(entry), n
    if n == split:
        return entry.get("ann_accuracy"), split
    return None, None


def _simulate(snn, data, ts: list[int], *, batch_size: int, chunk: int | None, accelerator: str, devices: int,
              progress: bool):
    """:func:`zoo.simulate` in this process, or :func:`zoo.evaluation.evaluate_snn` under Lightning."""
    if accelerator == "cpu" and devices == 1:
        from zoo.simulation import simulate

        return simulate(snn, data, ts, batch_size=batch_size, chunk=chunk, progress=progress)
    from zoo.evaluation import evaluate_snn

    return evaluate_snn(snn, data, ts, batch_size=batch_size, chunk=chunk, accelerator=accelerator,
                        devices=devices, progress=progress)


def _rows(result, ts: list[int], claimed: dict[int, float], n: int, *, compared: bool,
          replay: bool) -> list[dict[str, Any]]:
    """One row per T: the measured figures and, when ``compared``, the claim and whether it agrees."""
    rows = []
    for t in ts:
        acc, claim = float(result.accuracy[t]), claimed.get(t) if compared else None
        tol = None if claim is None else replay_tolerance(n) if replay else binomial_tolerance(claim, n)
        rows.append({"T": t, "accuracy": acc, "index": claim, "tolerance": tol,
                     "agrees": None if claim is None else abs(acc - claim) <= tol,
                     "spikes_per_image": float(result.spikes_per_image[t]),
                     "synops_per_image": float(result.synops_per_image[t]),
                     "energy_ratio": float(result.energy_ratio[t])})
    return rows


def remeasure(name: str, variant: str | None = None, *, test_images: int | str | None = None,
              timesteps: list[int] | None = None, root: str | Path | None = None, batch_size: int = 256,
              chunk: int | None = None, accelerator: str = "cpu", devices: int = 1,
              progress: bool = True) -> dict[str, Any]:
    """Load a published model (:func:`zoo.hub.load`), simulate it on its real test split and compare with its
    index.

    ``accelerator``/``devices``: other than ``"cpu"``/1, the simulation runs under Lightning
    (:func:`zoo.evaluation.evaluate_snn`, DDP over ``devices`` processes), with the same result.

    ``test_images``: None, the images the index was measured on (the pipeline's fixed seeded subset, or the
    whole split), so every claim is checked; ``"all"``, the whole test split, compared with the ANN's accuracy
    on the whole split; an int, a fixed seeded subset of that size (:func:`zoo.evaluation.eval_subset`). Seeded
    subsets are nested (the first n images of one seeded permutation), so up to the index's number of images
    a subset is part of the index's images and its claims are compared within the binomial tolerance of the
    smaller number: a quick check of a model measured on the whole split. On exactly the index's images an
    SNN is deterministic where it draws no random numbers (analog input, no spiking softmax) or draws them as
    the index's figures were drawn (the variant's ``draws`` is :data:`zoo.spiking.layer.DRAWS`: counter-based,
    a function of the seed and the image), so its claims must be replayed within :func:`replay_tolerance` (a
    few images); other stochastic figures are a random sample, compared within the binomial tolerance.
    ``timesteps``: default the index's. Returns ``model``, ``variant``, ``images``, ``split_images``,
    ``index_images`` (the number the index was measured on), ``same_images`` (exactly the index's images),
    ``subset_of_index`` (the index's images or some of them: its claims are compared), ``ann_accuracy`` and
    ``ann_images`` (the ANN on the same images, when the index knows it), ``within_1pp_from`` (the first T
    within 1 pp of it) and ``rows``, one per T: ``T``, ``accuracy``, ``index`` (the claim, when compared, else
    None), ``tolerance`` (see ``tolerance_kind``: ``"replay"`` or ``"binomial"``, at ``images``), ``agrees``,
    ``spikes_per_image``, ``synops_per_image``, ``energy_ratio``."""
    from zoo.evaluation import eval_subset

    index = read_index()
    entry = get_entry(index, name)
    vname, var = published_variant(entry, variant)
    claimed = {int(t): a for t, a in (var.get("accuracy") or {}).items() if a is not None}
    ts = sorted({int(t) for t in (timesteps or claimed)})
    if not ts or ts[0] < 1:
        raise ValueError(f"timesteps must be positive integers, got {timesteps!r}")
    test = test_data(name, root, index=index)
    split = len(test)
    evaluated = (entry.get("evaluation") or {}).get("test_images") or split
    n = _images(test_images, evaluated, split)
    indexed = min(evaluated, split)
    same, nested = n == indexed, n <= indexed
    ann, ann_images = _ann_on(entry, n, split, indexed)
    snn = load(name, vname, index=index)
    # the same images replay deterministically: an SNN without random draws, or one whose figures were drawn as
    # this code draws them (an index without "draws" predates the counter-based draws: a sample, binomial)
    replay = same and (snn.draws is None or var.get("draws") == snn.draws)
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    result = _simulate(snn, eval_subset(test, n), ts, batch_size=batch_size, chunk=chunk, accelerator=accelerator,
                       devices=devices, progress=progress)
    rows = _rows(result, ts, claimed, n, compared=nested, replay=replay)
    within = next((r["T"] for r in rows if ann is not None and r["accuracy"] >= ann - 0.01 - 1e-9), None)
    return {"model": name, "variant": vname, "images": n, "split_images": split, "index_images": indexed,
            "same_images": same, "subset_of_index": nested, "tolerance_kind": "replay" if replay else "binomial",
            "ann_accuracy": ann, "ann_images": ann_images,
            "within_1pp_from": within, "rows": rows}
