"""The pipeline's declarative configuration: ``params.yaml``, validated before any stage does work.

Sections: ``data`` (root, download), ``datasets`` (source per dataset), ``models`` (zoo entries: timm
architecture, dataset, training recipe), ``variants`` (named conversion recipes: a registry base plus
overrides), ``evaluation``, ``tracking`` (MLflow), ``zoos`` (which models each published zoo holds) and
``publish``. Validation is pure Python (no torch import) so a typo fails in well under a second with the
key, the bad value and the allowed values.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zoo.conversion.variants import DEFAULT_TIMESTEPS, Recipe, VariantError, get_variant, variants

# Architectures registered by zoo.models (checked against the registry by tests/test_config.py).
ZOO_ARCHS = ("vgg16_cifar", "cao_cifar", "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar",
             "inception_cifar", "diehl_fcn", "diehl_convnet", "vgg_mini", "resnet_mini", "plif_convnet")
SOURCES = ("digits", "mnist", "cifar10", "imagenet")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """params.yaml is invalid; the message names the key, the bad value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    root: str | None = Field(None, description="data root; null: $ZOO_DATA_DIR, else ./data/raw")
    download: bool = Field(False, description="download datasets when online")


class DatasetConfig(_Strict):
    source: Literal["digits", "mnist", "cifar10", "imagenet"]
    calib_size: int = Field(1000, gt=0, description="calibration images drawn from the train split")
    image_size: int | None = Field(None, gt=0, description="resize image folders (ImageNet)")
    seed: int = 0


class TrainConfig(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.1, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment: str = "auto"
    seed: int = 0
    val_fraction: float = Field(0.1, ge=0, lt=1)
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_workers: int = Field(0, ge=0)
    channels_last: bool = Field(False, description="NHWC layout for weights and batches: faster convolutions "
                                                    "(runtime setting; a checkpoint resumes under either)")
    init_from: str | None = Field(None, description="start from a published zoo model's ANN weights, "
                                                  "'<model>' or '<model>:<variant>' (a fine-tune, e.g. to QCFS)")
    timesteps: int | None = Field(None, gt=0, description="train a spiking net (act: plif or tssl) directly as an SNN of "
                                                          "this many timesteps (Fang et al. 2021); null: an ANN")
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = Field(
        "32-true", description="Lightning precision: 'bf16-mixed' autocasts to bfloat16 (CPU or GPU), '16-mixed' "
                               "to float16 (GPU); weights, optimizer state and the test accuracy stay float32")


class ModelConfig(_Strict):
    arch: str = Field(description="timm architecture name (zoo.models registers the CIFAR/MNIST ones)")
    dataset: str
    family: str = ""
    description: str = ""
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)


class VariantConfig(_Strict):
    base: str = Field(description="a registered variant (zoo variants) to start from")
    overrides: dict[str, Any] = Field(default_factory=dict, description="recipe fields to change")


#: Lightning strategies whose launcher starts the calling script again for every rank
EVAL_STRATEGY_ERROR = ("strategy={strategy!r} starts the calling script again in every rank, so each rank would run "
                       "the whole evaluation and write its outputs; use 'auto' (ddp_spawn for devices > 1) or "
                       "'ddp_spawn'")


def relaunches_script(strategy: Any) -> bool:
    """Whether the Lightning ``strategy`` (a name) runs the calling script once per rank ('ddp' and its
    variants), rather than spawning or forking workers from the calling process."""
    s = str(strategy)
    return s.startswith("ddp") and not s.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook"))


class EvaluationConfig(_Strict):
    timesteps: list[int] = Field(default_factory=lambda: list(DEFAULT_TIMESTEPS))
    test_images: int | None | dict[str, int | None] = Field(
        None, description="null: the whole test split; N: a fixed seeded subset of N images; {dataset: N|null}: "
                          "per dataset (datasets not named use the whole split)")
    batch_size: int = Field(256, gt=0)
    chunk: int | None = Field(None, gt=0, description="timesteps per simulator call (memory ~ chunk x batch)")
    diagnostics: bool = True
    accelerator: str = "cpu"
    devices: int = Field(1, gt=0, description="processes for Lightning DDP evaluation")
    strategy: str = "auto"

    @field_validator("test_images")
    @classmethod
    def _positive_images(cls, v: Any) -> Any:
        vals = v.values() if isinstance(v, dict) else [v]
        bad = [n for n in vals if n is not None and n <= 0]
        if bad:
            raise ValueError(f"test_images must be null or a positive number of images, got {bad[0]}")
        return v

    @field_validator("strategy")
    @classmethod
    def _spawning_strategy(cls, v: str) -> str:
        if relaunches_script(v):
            raise ValueError(EVAL_STRATEGY_ERROR.format(strategy=v))
        return v

    def images_for(self, dataset: str) -> int | None:
        """How many test images of ``dataset`` to evaluate on (None: all)."""
        if isinstance(self.test_images, dict):
            return self.test_images.get(dataset)
        return self.test_images

    @field_validator("timesteps")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        bad = [t for t in v if t <= 0]
        if not v or bad:
            raise ValueError(f"timesteps must be a non-empty list of positive integers (T > 0), got {bad or v}")
        return sorted(set(v))


class TrackingConfig(_Strict):
    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI: sqlite:///file.db or http(s)://server")
    experiment: str = "snn-zoo"
    champion_at_T: int = Field(32, gt=0, description="T at which the best variant becomes the 'champion'")

    @field_validator("uri")
    @classmethod
    def _no_file_store(cls, v: str) -> str:
        if v.startswith("file:") or "://" not in v:
            raise ValueError("use a database or server URI (sqlite:///mlflow.db, http://host:5000); MLflow 3's "
                             "file store is deprecated")
        return v


class ZooConfig(_Strict):
    dir: str
    models: list[str]
    variants: list[str] = Field(description="the variants (keys of `variants`) converted for every model")
    dtype: Literal["float32", "float16"] = "float32"
    remote: str | None = Field(None, description="base URL where the published files are served")
    default_only: list[str] = Field(default_factory=list, description=(
        "models whose default variant alone gets a published checkpoint (the index still holds every variant's "
        "measurements; the others are rebuilt with `dvc repro convert-<zoo>@<model>-<variant>`)"))
    max_mib: float = Field(64.0, gt=0, description="publish fails if the zoo's checkpoints exceed this many MiB")
    evaluation: dict[str, Any] = Field(default_factory=dict, description=(
        "settings of the `evaluation` section that differ for this zoo's models (e.g. fewer timesteps, the whole "
        "test split)"))


class PublishConfig(_Strict):
    registry: bool = Field(True, description="register each model's best variant in the MLflow model registry")


class Params(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    datasets: dict[str, DatasetConfig]
    models: dict[str, ModelConfig]
    variants: dict[str, VariantConfig]
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    zoos: dict[str, ZooConfig]
    publish: PublishConfig = Field(default_factory=PublishConfig)

    @model_validator(mode="after")
    def _cross_refs(self) -> "Params":
        errors = []
        for section in ("datasets", "models", "variants", "zoos"):
            for key in getattr(self, section):
                if not NAME.match(key):
                    errors.append(f"{section}.{key}: names may use letters, digits, '.', '_' and '-' only")
        for name, m in self.models.items():
            if m.dataset not in self.datasets:
                errors.append(_unknown(f"models.{name}.dataset", m.dataset, self.datasets))
            err = _check_arch(m.arch)
            if err:
                errors.append(f"models.{name}.arch: {err}")
        registry = variants()
        for name, v in self.variants.items():
            if v.base not in registry:
                errors.append(_unknown(f"variants.{name}.base", v.base, registry))
                continue
            try:
                get_variant(v.base, **v.overrides)
            except VariantError as e:
                errors.append(f"variants.{name}.overrides: {e}")
        for zname, z in self.zoos.items():
            try:
                self.evaluation_for(zname)
            except ValidationError as e:
                errors.append(f"zoos.{zname}.evaluation: {_format(e)}")
        if isinstance(self.evaluation.test_images, dict):
            for ds in self.evaluation.test_images:
                if ds not in self.datasets:
                    errors.append(_unknown("evaluation.test_images", ds, self.datasets))
        if self.tracking.champion_at_T not in self.evaluation.timesteps:
            errors.append(f"tracking.champion_at_T: {self.tracking.champion_at_T} is not one of evaluation.timesteps "
                          f"{self.evaluation.timesteps}")
        owner: dict[str, str] = {}
        for zname, z in self.zoos.items():
            for m in z.models:
                if m not in self.models:
                    errors.append(_unknown(f"zoos.{zname}.models", m, self.models))
                elif m in owner:
                    errors.append(f"zoos.{zname}.models: {m!r} is already in zoo {owner[m]!r}; a model belongs to one zoo")
                owner[m] = zname
            for m in z.default_only:
                if m not in z.models:
                    errors.append(_unknown(f"zoos.{zname}.default_only", m, z.models))
            for v in z.variants:
                if v not in self.variants:
                    errors.append(_unknown(f"zoos.{zname}.variants", v, self.variants))
            if len(set(z.variants)) != len(z.variants) or not z.variants:
                errors.append(f"zoos.{zname}.variants: list each variant once (at least one), got {z.variants}")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def recipe(self, variant: str, zoo: str | None = None) -> Recipe:
        """The variant's recipe, with the T ladder its zoo is evaluated at."""
        v = self.variants[variant]
        r = get_variant(v.base, **v.overrides)
        ts = (self.evaluation_for(zoo) if zoo else self.evaluation).timesteps
        return r.override(name=variant, timesteps=ts) if variant != v.base or r.timesteps != ts else r

    def evaluation_for(self, zoo: str) -> EvaluationConfig:
        """The `evaluation` section with the zoo's own overrides (``zoos.<zoo>.evaluation``) applied."""
        over = self.zoos[zoo].evaluation
        return EvaluationConfig(**{**self.evaluation.model_dump(), **over}) if over else self.evaluation

    def zoo_of(self, model: str) -> str:
        for zname, z in self.zoos.items():
            if model in z.models:
                return zname
        raise ConfigError(f"model {model!r} is in no zoo (zoos.*.models)")


def _unknown(key: str, value: Any, allowed) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{key}: unknown {value!r}.{hint} Allowed: {', '.join(allowed)}."


def _check_arch(arch: str) -> str | None:
    if arch in ZOO_ARCHS:
        return None
    close = difflib.get_close_matches(arch, ZOO_ARCHS, n=1, cutoff=0.85)
    if close:  # almost certainly a typo of a zoo architecture: fail fast, without importing timm
        return f"unknown architecture {arch!r}. Did you mean {close[0]!r}? Zoo architectures: {', '.join(ZOO_ARCHS)}."
    import timm  # slower: any other name must be in timm's registry

    if not timm.is_model(arch):
        near = difflib.get_close_matches(arch, timm.list_models(), n=3)
        return (f"unknown architecture {arch!r}: not a zoo architecture ({', '.join(ZOO_ARCHS)}) nor in timm's "
                f"registry" + (f"; close: {', '.join(near)}" if near else "") + ".")
    return None


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key (typo?); remove it or check the spelling")
        elif e["type"] == "value_error" and not loc:
            lines.append(str(e["ctx"]["error"]) if "ctx" in e else e["msg"])
        else:
            msg = e["msg"]
            if e["type"] == "literal_error":
                msg = f"invalid value {e.get('input')!r}; {msg}"
            lines.append(f"{loc}: {msg}" + (f" (got {e.get('input')!r})" if e["type"] not in (
                "literal_error", "missing") and not isinstance(e.get("input"), dict) else ""))
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root (where params.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    try:
        return Params(**raw)
    except ValidationError as err:
        raise ConfigError(f"{path} is invalid:\n{_format(err)}") from None


def project_root() -> Path:
    """The directory holding params.yaml (cwd for DVC stages; ZOO_PROJECT overrides)."""
    return Path(os.environ.get("ZOO_PROJECT", ".")).absolute()


__all__ = ["Params", "ConfigError", "load_params", "ZOO_ARCHS", "project_root"]
