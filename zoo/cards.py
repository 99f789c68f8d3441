"""Model cards and plots, rendered from the zoo index (see :mod:`zoo.hub`).

:func:`render_card` writes a model's card ``<zoo dir>/<name>/README.md`` (architecture, dataset, accuracy at
every T per variant next to the ANN, energy, spikes and synaptic operations, checksums, provenance, how to load
it) and ``accuracy.png`` (accuracy vs. timesteps) beside it. :func:`render_zoo_table` is the markdown table of the
whole zoo for the README; :func:`render_zoo_readme` writes it as the zoo folder's ``README.md``, linking the
cards; :func:`render_all` renders both. Output is deterministic (sorted, no timestamps,
no version strings in the PNG), so re-rendering an unchanged model changes none of its files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.hub import ann_reference, best_result, validate_index
from zoo.utils import atomic_path

__all__ = ["card_markdown", "render_card", "render_plot", "render_zoo_table", "render_zoo_readme", "render_all",
           "render_paper_table", "sync_readme", "sync_block"]

_DASH = "–"


def _pct(v: Any) -> str:
    return _DASH if v is None else f"{100 * float(v):.2f}%"


def _num(v: Any) -> str:
    if v is None:
        return _DASH
    v = float(v)
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-2):
        return f"{v:.3g}"
    return f"{v:,.3g}" if abs(v) < 1000 and v != int(v) else f"{v:,.0f}"


def _size(n: Any) -> str:
    if n is None:
        return _DASH
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


#: Published figures of the papers whose architectures a zoo model reproduces, by arch (``"<arch>:<act>"`` where
#: the paper's network is that arch trained with its own activation, see :func:`paper_key`): the paper's ANN
#: accuracy (None: a directly trained SNN has none) and its best SNN's, after ``presentation_T`` steps (None: not
#: comparable in steps), in the paper's ``setting``; cards of these archs compare them with the measured variants
#: listed under ``variants``.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "diehl_fcn": {"paper": "Diehl et al. 2015 (IJCNN), FCN 784-1200-1200-10", "ann": 0.9884, "snn": 0.9864,
                  "presentation_T": 500, "variants": ["diehl2015-model", "diehl2015-data"],
                  "setting": "500 steps of 1 ms (0.5 s) per image, Poisson input; the paper's figure is its best "
                             "normalized SNN"},
    "diehl_convnet": {"paper": "Diehl et al. 2015 (IJCNN), ConvNet 12c5-2s-64c5-2s-10", "ann": 0.9914,
                      "snn": 0.9910, "presentation_T": 500, "variants": ["diehl2015-model", "diehl2015-data"],
                      "setting": "500 steps of 1 ms (0.5 s) per image, Poisson input; the paper's figure is its "
                                 "best normalized SNN"},
    "cao_cifar": {"paper": "Cao, Chen & Khosla 2015 (IJCV), tailored CNN on CIFAR-10", "ann": 0.7912, "snn": 0.7743,
                  "presentation_T": None, "variants": ["cao2015", "cao2015-tuned"],
                  "setting": "a three-layer tailored CNN (no biases, average pooling, abs on the input) with Poisson "
                             "input; figures cited from memory of the paper, not checked against it"},
    "cao_cifar:softlif": {"paper": "Hunsberger & Eliasmith 2016 (arXiv:1611.05141), soft-LIF CNN on CIFAR-10",
                          "ann": 0.8597, "snn": 0.8354, "presentation_T": None, "variants": ["hunsberger2016"],
                          "setting": "a larger soft-LIF CNN trained with noise, run on LIF neurons with a synaptic "
                                     "filter; figures cited from memory of the paper's table, not checked against it"},
    "plif_convnet": {"paper": "Fang et al. 2021 (ICCV), PLIF ConvNet on MNIST", "ann": None, "snn": 0.9972,
                     "presentation_T": 8, "variants": ["fang2021"],
                     "setting": "trained directly at T=8 with 128-channel convolutions, fc 2048-100 and a voting "
                                "layer (this zoo's net is narrower and trained at its own T)"},
    "cao_cifar:plif": {"paper": "Fang et al. 2021 (ICCV), PLIF CNN on CIFAR-10", "ann": None, "snn": 0.9350,
                       "presentation_T": 8, "variants": ["fang2021"],
                       "setting": "trained directly from scratch at T=8, a CNN of 256-channel convolutions with two fc "
                                  "layers and a voting layer (this zoo's net is the tailored CNN, started from its "
                                  "ANN's weights and trained at T=4); figure cited from memory of the paper"},
    "plif_convnet:tssl": {"paper": "Zhang & Li 2020 (NeurIPS), TSSL-BP ConvNet on MNIST", "ann": None,
                          "snn": 0.9953, "presentation_T": 5, "variants": ["zhang2020"],
                          "setting": "trained directly with TSSL-BP at T=5, a 15C5-P2-40C5-P2-300 ConvNet (this "
                                     "zoo's is Fang et al.'s ConvNet with TSSL-BP's neurons); figure cited from "
                                     "memory of the paper's table, not checked against it"},
}


def paper_key(entry: dict) -> str:
    """The :data:`PAPER_RESULTS` key of a zoo entry: ``"<arch>:<act>"`` where the paper trained that architecture
    with its own activation (e.g. ``cao_cifar:softlif``), else the architecture."""
    arch, act = entry.get("arch", ""), _trained_act(entry)
    return f"{arch}:{act}" if act and f"{arch}:{act}" in PAPER_RESULTS else arch


def _trained_act(entry: dict) -> str | None:
    """The activation a zoo entry's network was trained with (``arch_kwargs.act``), None for the default."""
    return (((entry.get("params") or {}).get("arch_kwargs") or {}).get("act")
            or entry.get("arch_kwargs", {}).get("act"))


def _at_T(T: int | None) -> str:
    return f" (T={T})" if T else ""


def _paper_section(entry: dict, ref_acc: Any) -> list[str]:
    ref = PAPER_RESULTS.get(paper_key(entry))
    variants = [v for v in (ref or {}).get("variants", []) if v in entry.get("variants", {})]
    if not ref or not variants:
        return []
    T, label = ref["presentation_T"], _reference_label(entry)
    gap = (lambda a, r: f"{100 * (float(a) - float(r)):+.2f} pp" if a is not None and r else _DASH)
    rows = [[label, _pct(ref["ann"]), _DASH, _pct(ref_acc), _DASH, _DASH]]
    for v in variants:
        acc = {int(t): a for t, a in (entry["variants"][v].get("accuracy") or {}).items() if a is not None}
        at = min((t for t in acc if t >= T), default=None) if T else None  # first T covering the presentation
        best_t = max(acc, key=lambda t: (acc[t], -t)) if acc else None
        rows.append([f"`{v}`", _pct(ref["snn"]), gap(ref["snn"], ref["ann"]),
                     f"{_pct(acc.get(at))} (T={at})" if at else _DASH, gap(acc.get(at), ref_acc) if at else _DASH,
                     f"{_pct(acc[best_t])} (T={best_t})" if best_t else _DASH])
    return ["## Against the paper", "",
            f"{ref['paper']}: {ref['setting']}. " + ("Its network and this zoo's were trained separately." if
                                                     _direct_T(entry) else "Its ANN and this zoo's were trained "
                                                     "separately, so compare the gaps to each ANN."), ""] + \
        _table(["", "Paper", f"Paper − its {label}", "Measured", f"Measured − {label}", "Best measured"], rows,
               ["---", "--:", "--:", "--:", "--:", "--:"]) + [""]


def _direct_T(entry: dict) -> int | None:
    """The training T of a directly trained SNN (``params.train.timesteps``), None for a converted ANN."""
    return ((entry.get("params") or {}).get("train") or {}).get("timesteps")


def _reference_label(entry: dict) -> str:
    """What a model's SNNs are compared with: its ANN, or for a directly trained SNN the trained network itself
    at its training T (batch norm not yet folded)."""
    T = _direct_T(entry)
    return f"trained SNN (T={T})" if T else "ANN"


def _variants(entry: dict) -> list[str]:
    """Variant names, the default one first, then alphabetical."""
    default = entry.get("default_variant")
    return sorted(entry.get("variants", {}), key=lambda v: (v != default, v))


def _timesteps(entry: dict) -> list[int]:
    ts = {int(t) for var in entry.get("variants", {}).values() for t in (var.get("accuracy") or {})}
    return sorted(ts)


def _summary_section(entry: dict, ref_acc: float | None) -> list[str]:
    default = entry.get("default_variant")
    shape = entry.get("input_shape")
    kwargs = entry.get("arch_kwargs") or {}
    arch = f"`{entry.get('arch')}`" + (f" with `{json.dumps(kwargs, sort_keys=True)}`" if kwargs else "")
    summary = [
        ["Architecture", arch + (f" (family: {entry['family']})" if entry.get("family") else "")],
        ["Dataset", entry.get("dataset", _DASH)],
        ["Input shape", " × ".join(str(s) for s in shape) if shape else _DASH],
        [f"{_reference_label(entry)} accuracy", _pct(entry.get("ann_accuracy"))],
        ["Variants", ", ".join(f"`{v}`" + (" (default)" if v == default else "") for v in _variants(entry))],
    ]
    if _direct_T(entry):
        how = ("TSSL-BP: gradients through the spike times" if _trained_act(entry) == "tssl"
               else "surrogate gradients through time")
        summary.insert(3, ["Training", f"directly trained as an SNN of T={_direct_T(entry)} steps ({how}), not "
                                       "converted from an ANN"])
    ev = entry.get("evaluation") or {}
    if ev.get("test_images"):
        n, total = ev["test_images"], ev.get("test_split_images")
        if total and n < total:
            where = (f"a fixed seeded subset of {n:,} of the {total:,} test images (ANN on the same images: "
                     f"{_pct(ref_acc)})")
        else:
            where = f"all {n:,} test images"
        summary.append(["SNN evaluated on", where])
    best = best_result(entry)
    if best:
        near = first_within(entry)
        summary.append([f"Within 1 pp of the {_reference_label(entry)}", f"from T = {near[1]} (`{near[0]}`, {_pct(near[2])})" if near
                        else "not reached at any evaluated T"])
        summary.append(["Best SNN accuracy", f"{_pct(best[2])} (`{best[0]}`, T = {best[1]})"])
    return _table(["", ""], summary, ["---", "---"]) + [""]


def _accuracy_section(entry: dict, ref_acc: float | None, image: str | None) -> list[str]:
    ts = _timesteps(entry)
    lines = ["## Accuracy vs. timesteps", ""]
    if image:
        lines += [f"![{entry['name']}: SNN accuracy vs. timesteps T]({image})", ""]
    if not ts:
        return lines + ["No SNN accuracy recorded.", ""]
    header = ["Variant"] + [f"T={t}" for t in ts]
    rows = [[f"{_reference_label(entry)} (reference)"] + [_pct(ref_acc)] * len(ts)]
    for v in _variants(entry):
        acc = entry["variants"][v].get("accuracy") or {}
        rows.append([f"`{v}`"] + [_pct(acc.get(str(t))) for t in ts])
    lines += _table(header, rows, ["---"] + ["--:"] * len(ts)) + [""]
    lines += ["Accuracy of the SNN after T simulation timesteps; " + (
        "the reference row repeats the trained SNN's accuracy at its training T, before its batch norm was folded."
        if _direct_T(entry) else "the ANN row repeats the source network's accuracy for comparison."), ""]
    per_t = {v: entry["variants"][v]["energy_ratio_per_T"] for v in _variants(entry)
             if isinstance(entry["variants"][v].get("energy_ratio_per_T"), dict)}
    if per_t:
        rows = [[f"`{v}`"] + [_num(e.get(str(t))) for t in ts] for v, e in per_t.items()]
        lines += ["Energy ratio (SNN / ANN) after T timesteps:", ""]
        lines += _table(header, rows, ["---"] + ["--:"] * len(ts)) + [""]
    return lines


def _energy_section(entry: dict) -> list[str]:
    rows = []
    for v in _variants(entry):
        var = entry["variants"][v]
        rows.append([f"`{v}`", _num(var.get("energy_ratio")), _num(var.get("spikes_per_image")),
                     _num(var.get("synops_per_image")), _num(var.get("test_images"))])
    return (["## Energy and activity", ""]
            + _table(["Variant", "Energy ratio (SNN / ANN)", "Spikes / image", "SynOps / image", "Test images"],
                     rows, ["---", "--:", "--:", "--:", "--:"]) + [""]
            + ["Measured at the largest T evaluated. Energy ratio: the SNN's estimated energy (synaptic operations "
               "and analog-input MACs) relative to the ANN's multiply-accumulates; lower is better." + (
                   " For this directly trained SNN, the ANN is the same network run once with ReLUs in place of "
                   "its neurons." if _direct_T(entry) else ""), ""])


def _files_section(entry: dict) -> list[str]:
    rows, unpublished = [], []
    for v in _variants(entry):
        var = entry["variants"][v]
        if "file" in var:
            rows.append([f"`{v}`", f"`{var['file']}`", _size(var.get("size")), f"`{var.get('sha256')}`"])
        else:
            unpublished.append(v)
            rows.append([f"`{v}`", "not published", _DASH,
                         f"rebuild: `{var['rebuild']}`" if var.get("rebuild") else _DASH])
    lines = ["## Files and checksums", ""] + _table(["Variant", "File", "Size", "sha256"], rows) + [""]
    lines += ["`zoo.load` and `zoo pull` verify the size and sha256 before a file is used; the files are "
              "safetensors (no pickle).", ""]
    if unpublished:
        lines += [f"Only the published variants' checkpoints are in the zoo, to keep it small; the "
                  f"{len(unpublished)} others were measured (figures above) and are rebuilt from a checkout "
                  "with the command in their row.", ""]
    return lines


def _usage_section(entry: dict) -> list[str]:
    name, default, ts = entry["name"], entry.get("default_variant"), _timesteps(entry)
    lines = ["## How to load it", "", "```python", "import zoo",
             f'snn = zoo.load("{name}")' + (f'  # variant "{default}"' if default else ""),
             (f'data = zoo.test_data("{name}")  # {entry["dataset"]} test split, normalized as in training'
              if entry.get("input") else "data = ...  # your test images, normalized as the ANN was trained"),
             f"result = zoo.simulate(snn, data, timesteps={ts or [1, 2, 4, 8, 16, 32]})", "```", ""]
    others = [v for v in _variants(entry) if v != default and "file" in entry["variants"][v]]
    if others:
        lines += [f'Other variants: `zoo.load("{name}", variant="{others[0]}")`. '
                  f"From the shell: `zoo pull {name}` prints the verified local path.", ""]
    else:
        lines += [f"From the shell: `zoo pull {name}` prints the verified local path.", ""]
    return lines


def _provenance_section(entry: dict, generated: str | None) -> list[str]:
    lines = ["## Provenance", ""]
    prov = [["Git commit", f"`{entry['git_commit']}`" if entry.get("git_commit") else _DASH]]
    if generated:
        prov.append(["Index generated", generated])
    lines += _table(["", ""], prov, ["---", "---"]) + [""]
    if entry.get("params"):
        lines += ["Parameters:", "", "```json", json.dumps(entry["params"], indent=2, sort_keys=True, default=str),
                  "```", ""]
    recipes = {v: entry["variants"][v]["recipe"] for v in _variants(entry) if entry["variants"][v].get("recipe")}
    for v, recipe in recipes.items():
        lines += [f"Recipe of `{v}`:", "", "```json", json.dumps(recipe, indent=2, sort_keys=True, default=str),
                  "```", ""]
    return lines


def card_markdown(entry: dict, *, image: str | None = None, generated: str | None = None) -> str:
    """The model card of one index entry as markdown; ``image`` is the plot's relative link (none if None)."""
    ref_acc = ann_reference(entry)
    lines = [f"# {entry['name']}", ""]
    if entry.get("description"):
        lines += [entry["description"].strip(), ""]
    lines += _summary_section(entry, ref_acc)
    lines += _accuracy_section(entry, ref_acc, image)
    lines += _paper_section(entry, ref_acc)
    lines += _energy_section(entry)
    lines += _files_section(entry)
    lines += _usage_section(entry)
    lines += _provenance_section(entry, generated)
    if entry.get("notes"):
        lines += ["## Notes", "", entry["notes"].strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_plot(entry: dict, path: str | Path) -> Path:
    """Accuracy vs. T (log2 x-axis), one line per variant and the ANN as a dashed line, saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ts = _timesteps(entry)
    for v in _variants(entry):
        acc = entry["variants"][v].get("accuracy") or {}
        pts = sorted((int(t), float(a)) for t, a in acc.items() if a is not None)
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", markersize=3, label=v)
    ref_acc = ann_reference(entry)
    if ref_acc is not None:
        ax.axhline(100 * float(ref_acc), color="black", linestyle="--", linewidth=1, label=_reference_label(entry))
    ax.set_xscale("log", base=2)
    if ts:
        ax.xaxis.set_major_locator(FixedLocator(ts))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ts, [str(t) for t in ts])
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{entry['name']} ({entry.get('dataset', '')})")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version string: reproducible bytes
    return path


CARD, PLOT = "README.md", "accuracy.png"  # in a model's folder of the zoo: <zoo dir>/<name>/


def render_card(entry: dict, out_dir: str | Path, *, plot: bool = True, generated: str | None = None) -> Path:
    """Write the card ``<out_dir>/README.md`` (and ``accuracy.png``, linked from it, when ``plot``) of one model;
    ``out_dir`` is the model's folder of the zoo. Returns the card's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = None
    if plot:
        image = render_plot(entry, out_dir / PLOT).name
    card = out_dir / CARD
    with atomic_path(card) as tmp:
        tmp.write_text(card_markdown(entry, image=image, generated=generated), encoding="utf-8")
        tmp.chmod(0o644)
    return card


def first_within(entry: dict, tolerance: float = 0.01) -> tuple[str, int, float] | None:
    """``(variant, T, accuracy)``: the smallest T at which some variant is within ``tolerance`` of the ANN on
    the same test images (the entry's ``evaluation.ann_accuracy``, else ``ann_accuracy``); None if none is."""
    ref = ann_reference(entry)
    if ref is None:
        return None
    floor = ref - tolerance - 1e-9  # inclusive: exactly 1 pp below (e.g. 3 of 300 images) counts, whatever the rounding
    hits = [(int(t), v, float(a)) for v, var in sorted(entry.get("variants", {}).items())
            for t, a in (var.get("accuracy") or {}).items() if a is not None and float(a) >= floor]
    if not hits:
        return None
    t, v, a = min(hits, key=lambda h: (h[0], -h[2]))
    return v, t, a


def render_zoo_table(index: dict, *, link_dir: str | None = None) -> str:
    """Markdown table of every model: name, dataset, ANN accuracy, best variant, best SNN accuracy and its T,
    energy ratio (of the best variant). ``link_dir`` (e.g. ``"models/zoo"``, the zoo's folder) links names to their
    cards (``<link_dir>/<name>/README.md``)."""
    rows = []
    for name, e in sorted(index.get("models", {}).items()):
        best = best_result(e)
        if link_dir is None:
            label = f"`{name}`"
        else:
            prefix = link_dir.rstrip("/") + "/" if link_dir else ""
            label = f"[{name}]({prefix}{name}/{CARD})"
        ev = e.get("evaluation") or {}
        images = _num(ev.get("test_images")) if ev.get("test_images") else _DASH
        near = first_within(e)
        near_s = f"T={near[1]} (`{near[0]}`)" if near else "not reached"
        if best:
            v, t, acc = best
            energy = _num(e["variants"][v].get("energy_ratio"))
            rows.append([label, e.get("dataset", _DASH), images, _pct(ann_reference(e)), f"`{v}`",
                         f"{_pct(acc)} (T={t})", near_s, energy])
        else:
            rows.append([label, e.get("dataset", _DASH), images, _pct(ann_reference(e)), _DASH, _DASH,
                         _DASH, _DASH])
    header = ["Model", "Dataset", "Test images", "ANN acc. (same images)", "Best variant", "Best SNN acc. (T)",
              "Within 1 pp of ANN", "Energy ratio"]
    return "\n".join(_table(header, rows, ["---", "---", "--:", "--:", "---", "--:", "--:", "--:"])) + "\n"


def render_zoo_readme(index: dict, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/README.md``: the zoo table, linking each model's card (``<name>/README.md``)."""
    readme = Path(out_dir) / "README.md"
    text = "# The snn-zoo model zoo\n\n" + render_zoo_table(index, link_dir="") + \
        "\nLoad any of them with `zoo.load(\"<name>\")`; `zoo list` lists them with their variants, " \
        "`zoo info <name>` prints a card.\n"
    with atomic_path(readme) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
    return readme


def render_all(index: dict, out_dir: str | Path, *, plot: bool = True) -> list[Path]:
    """Render every model's card (and plot) into ``<out_dir>/<name>/`` plus ``<out_dir>/README.md`` with the zoo
    table linking them; returns the written paths (cards first, README last)."""
    validate_index(index)
    out_dir = Path(out_dir)
    paths = [render_card(e, out_dir / name, plot=plot) for name, e in sorted(index["models"].items())]
    return paths + [render_zoo_readme(index, out_dir)]


def readme_block(index: dict, link_dir: str) -> str:
    """The project README's table of a zoo: one summary row per model, linked to its card (which holds every
    variant's figures)."""
    return render_zoo_table(index, link_dir=link_dir)


def render_paper_table(indexes: dict[str, dict]) -> str:
    """The seed papers' reported figures beside this project's measurements on the same architecture and dataset
    (:data:`PAPER_RESULTS`): one row per (paper, zoo model, variant of the paper's method), from the published
    indexes ``{link_dir: index}`` (``link_dir``: the zoo's folder, linked to the model's card)."""
    rows = []
    for key, ref in PAPER_RESULTS.items():
        for link_dir, index in sorted(indexes.items()):
            for name, e in sorted(index.get("models", {}).items()):
                if paper_key(e) != key:
                    continue
                T, label = ref["presentation_T"], _reference_label(e)
                for v in [v for v in ref["variants"] if v in e.get("variants", {})]:
                    acc = {int(t): a for t, a in (e["variants"][v].get("accuracy") or {}).items() if a is not None}
                    at = min((t for t in acc if t >= T), default=None) if T else None
                    best_t = max(acc, key=lambda t: (acc[t], -t)) if acc else None
                    rows.append([ref["paper"], f"[{name}]({link_dir.rstrip('/')}/{name}/{CARD})", f"`{v}`",
                                 f"{_pct(ref['ann'])} / {_pct(ref['snn'])}{_at_T(T)}",
                                 f"{_pct(ann_reference(e))} ({label})",
                                 f"{_pct(acc.get(at))} (T={at})" if at else _DASH,
                                 f"{_pct(acc[best_t])} (T={best_t})" if best_t else _DASH])
    header = ["Paper", "Model here", "Variant", "Paper: ANN / SNN", "Here: reference", "Here: SNN at the paper's T",
              "Here: best SNN"]
    return "\n".join(_table(header, rows, ["---", "---", "---", "--:", "--:", "--:", "--:"])) + "\n"


def sync_block(readme: str | Path, marker: str, block: str) -> bool:
    """Replace the text between ``<!-- marker -->`` and ``<!-- /marker -->`` in ``readme`` with ``block``.
    Returns whether the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text:
        raise ValueError(f"{readme} has no '{start}' marker")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1] if end in rest else rest
    new = f"{head}{start}\n{block}{end}{tail}"
    if new != text:
        with atomic_path(readme) as tmp:
            tmp.write_text(new)
    return new != text


def sync_readme(readme: str | Path, index: dict, marker: str, link_dir: str) -> bool:
    """Replace the block between ``<!-- marker -->`` and ``<!-- /marker -->`` in ``readme`` with the tables
    rendered from ``index``. Returns whether the file changed."""
    return sync_block(readme, marker, readme_block(index, link_dir))
