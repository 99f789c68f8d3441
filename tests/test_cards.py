"""zoo.cards: model cards, plots and the zoo table rendered from an index."""
from __future__ import annotations

import copy

import pytest

from zoo import cards

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _entry(name="sresnet20-cifar10", **over):
    e = {
        "name": name, "family": "resnet", "arch": "resnet20_cifar", "arch_kwargs": {"num_classes": 10},
        "dataset": "cifar10", "input_shape": [3, 32, 32], "ann_accuracy": 0.9012,
        "description": "ResNet-20 trained on CIFAR-10, converted to integrate-and-fire neurons.",
        "notes": "Max-pooling is rate-gated.", "default_variant": "hu2018", "git_commit": "abc123",
        "params": {"epochs": 200, "lr": 0.1},
        "variants": {
            "hu2018": {"accuracy": {"1": 0.10, "2": 0.2, "4": 0.5, "256": 0.90}, "energy_ratio": 0.31,
                       "spikes_per_image": 12345.0, "synops_per_image": 1.2e6, "test_images": 10000,
                       "energy_ratio_per_T": {"1": 0.01, "2": 0.02, "4": 0.05, "256": 0.31},
                       "recipe": {"neuron": "if"}, "file": f"{name}/hu2018.safetensors", "size": 123456,
                       "sha256": "a" * 64},
            "rueckauer2017": {"accuracy": {"1": 0.05, "8": 0.7, "256": 0.88}, "energy_ratio": 0.5,
                              "spikes_per_image": 2e4, "synops_per_image": 3e6, "test_images": 10000,
                              "file": f"{name}/rueckauer2017.safetensors", "size": 654321, "sha256": "b" * 64},
        },
    }
    e.update(over)
    return e


def _index(*entries):
    return {"schema": 1, "generated": "2026-11-29T00:00:00Z", "models": {e["name"]: e for e in entries}}


def test_render_card_writes_markdown_and_plot(tmp_path):
    path = cards.render_card(_entry(), tmp_path / "sresnet20-cifar10")
    assert path == tmp_path / "sresnet20-cifar10" / "README.md"
    md = path.read_text()
    png = tmp_path / "sresnet20-cifar10" / "accuracy.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert "](accuracy.png)" in md
    assert sorted(f.name for f in path.parent.iterdir()) == ["README.md", "accuracy.png"]  # no temporary files
    # accuracy table: every T of every variant, ANN row for comparison, missing cells dashed
    assert "| Variant | T=1 | T=2 | T=4 | T=8 | T=256 |" in md
    assert "| ANN (reference) | 90.12% | 90.12% | 90.12% | 90.12% | 90.12% |" in md
    assert "| `hu2018` | 10.00% | 20.00% | 50.00% | – | 90.00% |" in md
    assert "| `rueckauer2017` | 5.00% | – | – | 70.00% | 88.00% |" in md
    for needle in ["`resnet20_cifar`", "cifar10", "3 × 32 × 32", "0.31", "12,345", "1.2e+06", "a" * 64,
                   "b" * 64, "abc123", '"epochs": 200', "Best SNN accuracy | 90.00% (`hu2018`, T = 256)",
                   'snn = zoo.load("sresnet20-cifar10")', "result = zoo.simulate(snn, data, timesteps=[1, 2, 4, 8, 256])",
                   "import zoo", "Max-pooling is rate-gated."]:
        assert needle in md, needle
    assert "| `hu2018` | 0.01 | 0.02 | 0.05 | – | 0.31 |" in md  # energy ratio per T
    # the hu2018 (default) row comes before the other variant
    assert md.index("| `hu2018` | 10.00%") < md.index("| `rueckauer2017` | 5.00%")


def test_render_card_is_deterministic(tmp_path):
    a = cards.render_card(_entry(), tmp_path / "a")
    b = cards.render_card(_entry(), tmp_path / "b")
    assert a.read_text() == b.read_text()
    assert (tmp_path / "a" / "accuracy.png").read_bytes() == (tmp_path / "b" / "accuracy.png").read_bytes()


def test_card_marks_unpublished_variants(tmp_path):
    e = _entry()
    var = e["variants"]["rueckauer2017"]
    for k in ("file", "size", "sha256"):
        var.pop(k)
    var["rebuild"] = "dvc repro convert-full@sresnet20-cifar10-rueckauer2017"
    md = cards.card_markdown(e)
    assert "| `rueckauer2017` | not published | – | rebuild: `dvc repro convert-full@sresnet20-cifar10-rueckauer2017` |" in md
    assert "the 1 others were measured" in md
    assert 'variant="rueckauer2017"' not in md  # no load example for a file that is not there
    assert "| `rueckauer2017` |" in md.split("## Accuracy vs. timesteps")[1]  # its figures stay


def test_card_tolerates_missing_optional_fields(tmp_path):
    e = _entry(name="bare")
    for k in ("family", "arch_kwargs", "input_shape", "description", "notes", "git_commit", "params"):
        e.pop(k)
    e["ann_accuracy"] = None
    e["variants"] = {"hu2018": {"accuracy": {"4": None, "8": 0.5}, "file": "bare/hu2018.safetensors",
                                "size": 10, "sha256": "c" * 64}}
    md = cards.render_card(e, tmp_path).read_text()
    assert "| `hu2018` | – | 50.00% |" in md and (tmp_path / "accuracy.png").is_file()
    assert "`bare/hu2018.safetensors`" in md
    md = cards.render_card(e, tmp_path / "noplot", plot=False).read_text()
    assert ".png" not in md and not (tmp_path / "noplot" / "accuracy.png").exists()


def test_render_zoo_table():
    idx = _index(_entry(), _entry(name="svgg11-mnist", dataset="mnist", ann_accuracy=0.99))
    idx["models"]["svgg11-mnist"]["variants"]["rueckauer2017"]["accuracy"]["64"] = 0.995
    table = cards.render_zoo_table(idx)
    lines = table.strip().splitlines()
    assert lines[0] == ("| Model | Dataset | Test images | ANN acc. (same images) | Best variant | Best SNN acc. (T) | "
                        "Within 1 pp of ANN | Energy ratio |")
    assert lines[2] == ("| `sresnet20-cifar10` | cifar10 | – | 90.12% | `hu2018` | 90.00% (T=256) | T=256 (`hu2018`) "
                        "| 0.31 |")
    # svgg11: rueckauer2017 reaches 98.0% (within 1 pp of 99%) first at T=64
    assert lines[3] == ("| `svgg11-mnist` | mnist | – | 99.00% | `rueckauer2017` | 99.50% (T=64) | T=64 "
                        "(`rueckauer2017`) | 0.5 |")
    linked = cards.render_zoo_table(idx, link_dir="models/zoo/")
    assert "[svgg11-mnist](models/zoo/svgg11-mnist/README.md)" in linked
    assert "[svgg11-mnist](svgg11-mnist/README.md)" in cards.render_zoo_table(idx, link_dir="")


def test_render_all(tmp_path):
    idx = _index(_entry(), _entry(name="svgg11-mnist", dataset="mnist"))
    paths = cards.render_all(idx, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "sresnet20-cifar10/README.md", "svgg11-mnist/README.md", "README.md"]
    assert all(p.is_file() for p in paths)
    assert (tmp_path / "svgg11-mnist" / "accuracy.png").is_file()
    assert "[svgg11-mnist](svgg11-mnist/README.md)" in (tmp_path / "README.md").read_text()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_render_all_validates(tmp_path):
    bad = _index(_entry())
    bad = copy.deepcopy(bad)
    bad["models"]["sresnet20-cifar10"]["variants"]["hu2018"]["file"] = "x.pt"
    from zoo.hub import IndexFormatError

    with pytest.raises(IndexFormatError):
        cards.render_all(bad, tmp_path)


def test_card_says_which_test_images_and_compares_with_the_ann_on_them(tmp_path):
    sub = _entry(evaluation={"test_images": 1000, "test_split_images": 10000, "ann_accuracy": 0.905})
    md = cards.render_card(sub, tmp_path / "a").read_text()
    assert "| SNN evaluated on | a fixed seeded subset of 1,000 of the 10,000 test images (ANN on the same " \
           "images: 90.50%) |" in md
    assert "| ANN (reference) | 90.50% |" in md  # the reference row is the ANN on the SNN's images
    assert "| cifar10 | 1,000 | 90.50% | `hu2018` |" in cards.render_zoo_table(_index(sub))
    full = _entry(evaluation={"test_images": 10000, "test_split_images": 10000, "ann_accuracy": 0.9012})
    md = cards.render_card(full, tmp_path / "b").read_text()
    assert "| SNN evaluated on | all 10,000 test images |" in md
    # within 1 pp of the ANN on the SNN's images: hu2018's 90.0% at T=256 is within 1 pp of 90.5%, not of 91.2%
    assert cards.first_within(sub) == ("hu2018", 256, 0.90)
    assert cards.first_within(_entry(evaluation={"ann_accuracy": 0.912})) is None
    # exactly 1 pp below counts, however the fractions round: 258 vs 261 of 300, 9,791 vs 9,891 of 10,000
    edge = _entry(evaluation={"ann_accuracy": 261 / 300})
    edge["variants"]["hu2018"]["accuracy"]["64"] = 258 / 300
    assert cards.first_within(edge) == ("hu2018", 64, 258 / 300)
    edge = _entry(evaluation={"ann_accuracy": 0.9891})
    edge["variants"]["hu2018"]["accuracy"]["64"] = 0.9791
    assert cards.first_within(edge) == ("hu2018", 64, 0.9791)
    edge["variants"]["hu2018"]["accuracy"]["64"] = 0.9790
    assert cards.first_within(edge) is None  # 1.01 pp below


def test_card_says_when_the_snn_comes_within_1pp_of_the_ann(tmp_path):
    md = cards.render_card(_entry(), tmp_path / "a", plot=False).read_text()
    assert "| Within 1 pp of the ANN | from T = 256 (`hu2018`, 90.00%) |" in md
    md = cards.render_card(_entry(ann_accuracy=0.95), tmp_path / "b", plot=False).read_text()
    assert "| Within 1 pp of the ANN | not reached at any evaluated T |" in md


def test_card_of_a_directly_trained_snn_names_its_reference_and_the_paper():
    e = _entry(name="plif-convnet-mnist", arch="plif_convnet", dataset="mnist", ann_accuracy=0.995,
               params={"train": {"timesteps": 4, "epochs": 15}}, default_variant="fang2021")
    e["variants"] = {"fang2021": dict(e["variants"]["hu2018"], accuracy={"4": 0.9951, "8": 0.9953})}
    md = cards.card_markdown(e)
    assert "| trained SNN (T=4) accuracy | 99.50% |" in md and "ANN accuracy" not in md
    assert "| Training | directly trained as an SNN of T=4 steps" in md
    assert "| trained SNN (T=4) (reference) | 99.50% | 99.50% |" in md
    paper = md.split("## Against the paper")[1].split("##")[0]
    assert "Fang et al. 2021" in paper
    # the paper has no ANN: no gap to one; the measured gap is to the trained SNN, at the paper's T=8
    assert "| `fang2021` | 99.72% | – | 99.53% (T=8) | +0.03 pp | 99.53% (T=8) |" in paper
    assert "surrogate gradients through time" in md
    converted = cards.card_markdown(_entry())
    assert "| ANN accuracy | 90.12% |" in converted and "| Training |" not in converted


def test_card_of_a_tssl_bp_snn_names_its_training_and_its_own_paper():
    """The same ConvNet trained with TSSL-BP neurons: Zhang & Li 2020's MNIST figure at T=5, not Fang et al.'s."""
    e = _entry(name="tssl-convnet-mnist", arch="plif_convnet", dataset="mnist", ann_accuracy=0.9934,
               params={"arch_kwargs": {"act": "tssl"}, "train": {"timesteps": 5}}, default_variant="zhang2020")
    e["variants"] = {"zhang2020": dict(e["variants"]["hu2018"], accuracy={"4": 0.9932, "5": 0.9933, "8": 0.9922})}
    assert cards.paper_key(e) == "plif_convnet:tssl"
    md = cards.card_markdown(e)
    assert "| Training | directly trained as an SNN of T=5 steps (TSSL-BP: gradients through the spike times)" in md
    paper = md.split("## Against the paper")[1].split("##")[0]
    assert "Zhang & Li 2020" in paper and "Fang et al. 2021 (ICCV)" not in paper and "99.72%" not in paper
    assert "| `zhang2020` | 99.53% | – | 99.33% (T=5) | -0.01 pp | 99.33% (T=5) |" in paper


def test_paper_rows_follow_the_trained_activation():
    """One architecture, two papers: the tailored CNN with ReLUs is Cao et al.'s network, with soft-LIF activations
    Hunsberger & Eliasmith's; each card and the seed-papers table compare it with its own paper and variant."""
    relu = _entry(name="cao-cnn-cifar10", arch="cao_cifar", ann_accuracy=0.85, default_variant="cao2015",
                  params={"arch_kwargs": {}})
    relu["variants"] = {"cao2015": dict(relu["variants"]["hu2018"], accuracy={"64": 0.80, "256": 0.84}),
                        "hunsberger2016": dict(relu["variants"]["hu2018"], accuracy={"256": 0.5})}
    soft = copy.deepcopy(relu)
    soft.update(name="softlif-cnn-cifar10", params={"arch_kwargs": {"act": "softlif"}})
    assert (cards.paper_key(relu), cards.paper_key(soft)) == ("cao_cifar", "cao_cifar:softlif")
    assert cards.paper_key(_entry()) == "resnet20_cifar"
    md = cards.card_markdown(relu).split("## Against the paper")[1].split("##")[0]
    assert "Cao, Chen & Khosla 2015" in md and "`hunsberger2016`" not in md
    # no presentation length to compare at: the measured-at-T cells are empty, the best one is given
    assert "| `cao2015` | 77.43% | -1.69 pp | – | – | 84.00% (T=256) |" in md
    md = cards.card_markdown(soft).split("## Against the paper")[1].split("##")[0]
    assert "Hunsberger & Eliasmith 2016" in md and "`cao2015`" not in md
    table = cards.render_paper_table({"models/zoo-tailored": _index(relu, soft)})
    assert "| 79.12% / 77.43% |" in table and "cao-cnn-cifar10" in table and "softlif-cnn-cifar10" in table
    assert table.count("Hunsberger") == 1 and table.count("Cao, Chen") == 1
