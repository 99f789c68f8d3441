"""Conversion variants as data: a registry of named recipes from the literature.

A :class:`Recipe` is the full set of options the converter and simulator use. Each named variant is a
recipe; users list them (``zoo.variants()``), read them, and override any field::

    recipe = get_variant("rueckauer2017", percentile=99.99, channel_wise=True)
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_TIMESTEPS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class VariantError(ValueError):
    """An unknown variant name or an invalid recipe value; the message lists the valid choices."""


class Recipe(BaseModel):
    """Every option of a conversion + simulation, with its valid values."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = "custom"
    description: str = ""
    reference: str = ""
    # neurons
    neuron: Literal["if", "lif", "plif", "tssl"] = Field(
        "if", description="integrate-and-fire or leaky integrate-and-fire; plif/tssl: a directly trained SNN's own "
                          "PLIF or TSSL-BP neurons, kept as trained (needs norm='trained')")
    reset: Literal["subtract", "zero"] = Field("subtract", description="reset by subtraction or to zero")
    v_init: float = Field(0.0, ge=0.0, le=1.0, description="initial membrane potential, fraction of threshold")
    tau_rc: float = Field(0.02, gt=0, description="LIF membrane time constant [s]")
    tau_ref: float = Field(0.0, ge=0, description="LIF refractory period [s]")
    dt: float = Field(0.001, gt=0, description="LIF timestep [s]")
    synapse_tau: float | None = Field(None, gt=0, description="exponential synaptic filter on spikes [s]")
    # input / output
    encoder: Literal["analog", "poisson"] = Field("analog", description="input coding")
    poisson_rate: float | None = Field(
        1.0, gt=0, description="Poisson input: spike probability c*|x| per step, spikes of +-1/c; None: c = 1/max|x| "
                               "of the calibration images, the largest rate at which no input's probability is "
                               "clipped at 1 (standardized images exceed 1), stored resolved in the checkpoint")
    readout: Literal["membrane", "spike_count", "softmax"] = Field("membrane", description="output decoding")
    # layers
    bias: Literal["current", "drop"] = Field("current", description="biases as constant input current, or zeroed")
    maxpool: Literal["rate_gated", "spike_max"] = Field(
        "rate_gated", description="max-pooling gated by rates (Rueckauer) or max over spikes (Fang)")
    # normalization
    norm: Literal["none", "model", "max", "percentile", "trained"] = Field(
        "percentile", description="threshold source ('trained': the ANN's own trained clip, e.g. QCFS's lambda)")
    percentile: float = Field(99.9, gt=0, le=100, description="percentile of positive activations")
    threshold: float = Field(1.0, gt=0, description="norm='none': every neuron's threshold, in the ANN's units (Cao "
                             "et al. tuned one by hand; Diehl et al. 2015 swept it for unnormalized nets)")
    channel_wise: bool = Field(False, description="one threshold per channel instead of per layer")
    form: Literal["threshold", "weight"] = Field(
        "threshold", description="threshold balancing, or weight normalization with unit thresholds")
    depth_compensation: float = Field(
        0.0, ge=0, lt=1, description="against the rate loss that accumulates with depth: thresholds lowered so that "
                    "the gain accumulated over a neuron's depth d (longest path) is 1+c*d")
    input_bound: float | None = Field(None, gt=0, description="model-based norm: bound on |input| per step (None: "
                                      "1/poisson_rate for Poisson input, whose spikes are +-1/c; else the data max)")
    normalize_output: bool = Field(True, description="spiking readout: the output layer scaled by its own threshold; "
                                                     "False: it keeps its trained weights (its threshold is that of "
                                                     "the layer feeding it), as in Diehl et al.'s released code")
    # calibration of the converted network (Li et al. 2021)
    correction: Literal["none", "potential", "bias"] = Field(
        "none", description="per-channel correction fitted on calibration data, layer by layer from the input, so "
                            "that each layer's mean SNN output after correction_timesteps steps matches the ANN's: "
                            "added to the initial membrane ('potential') or to the input current ('bias')")
    correction_timesteps: int = Field(8, gt=0, description="T at which the correction is fitted")
    signed: bool = Field(False, description="signed IF neurons with memory (Wang et al. 2022): after it has fired, a "
                                            "neuron whose membrane falls below 0 emits a negative spike, taking "
                                            "back a spike sent too early")
    # simulation
    timesteps: list[int] = Field(default_factory=lambda: list(DEFAULT_TIMESTEPS), description="T values to report")
    seed: int = Field(0, description="seed for Poisson input and spiking softmax")

    @field_validator("timesteps")
    @classmethod
    def _check_timesteps(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("timesteps must not be empty")
        bad = [t for t in v if t <= 0]
        if bad:
            raise ValueError(f"timesteps must be positive integers (T > 0), got {bad}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _check_correction(self) -> "Recipe":
        if self.correction != "none" and self.form != "threshold":
            raise ValueError(f"correction={self.correction!r} needs form='threshold' (the corrections are in the "
                             "ANN's units)")
        if self.neuron in ("plif", "tssl") and self.norm != "trained":
            raise ValueError(f"neuron={self.neuron!r} keeps a directly trained SNN's neurons as trained: it needs "
                             "norm='trained'")
        if self.threshold != 1.0 and self.norm != "none":
            raise ValueError(f"threshold={self.threshold} sets the thresholds of norm='none' only; norm={self.norm!r} "
                             "computes its own (scale them with percentile, or use norm='none')")
        if self.signed and (self.neuron, self.reset) != ("if", "subtract"):
            raise ValueError("signed=True needs neuron='if' and reset='subtract' (a negative spike undoes one "
                             "subtraction)")
        return self

    def stored(self) -> dict[str, Any]:
        """The recipe as a checkpoint stores it: every field, except opt-in features left off (``signed``), so
        that the checkpoints of recipes without them keep the bytes they had before those fields existed."""
        d = self.model_dump()
        for key, off in _STORED_WHEN_SET.items():
            if d[key] == off:
                del d[key]
        return d

    def override(self, **changes: Any) -> "Recipe":
        return make_recipe({**self.model_dump(), **changes})

    @property
    def t_max(self) -> int:
        return max(self.timesteps)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {name: (f.description or "") for name, f in cls.model_fields.items()}


#: opt-in recipe fields a checkpoint stores only when they are on (read back as their default when absent)
_STORED_WHEN_SET = {"signed": False, "normalize_output": True, "threshold": 1.0}


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        if not e["loc"]:  # a check across fields: its message says it all
            lines.append(str(e["msg"]).removeprefix("Value error, "))
            continue
        loc = ".".join(str(p) for p in e["loc"]) or "recipe"
        field = Recipe.model_fields.get(str(e["loc"][0])) if e["loc"] else None
        valid = ""
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, list(Recipe.model_fields), n=3)
            valid = f" Valid fields: {', '.join(Recipe.model_fields)}." + (f" Did you mean {close[0]!r}?" if close else "")
            lines.append(f"unknown option {loc!r}.{valid}")
            continue
        if field is not None and getattr(field.annotation, "__origin__", None) is Literal:
            valid = f" Valid values: {', '.join(repr(a) for a in field.annotation.__args__)}."
        lines.append(f"invalid value for {loc!r}: {e.get('input')!r} ({e['msg']}).{valid}")
    return "; ".join(lines)


def make_recipe(fields: dict[str, Any]) -> Recipe:
    try:
        return Recipe(**fields)
    except ValidationError as err:
        raise VariantError(_format_error(err)) from None


_REGISTRY: dict[str, Recipe] = {}


def register_variant(recipe: Recipe) -> Recipe:
    _REGISTRY[recipe.name] = recipe
    return recipe


def variants() -> dict[str, Recipe]:
    """All registered conversion variants by name."""
    return dict(_REGISTRY)


def get_variant(name: str | Recipe, **overrides: Any) -> Recipe:
    """The recipe ``name`` with fields overridden; unknown names and invalid values raise VariantError."""
    if isinstance(name, Recipe):
        base = name
    elif name in _REGISTRY:
        base = _REGISTRY[name]
    else:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise VariantError(f"unknown variant {name!r}.{hint} Valid variants: {', '.join(_REGISTRY)}.")
    return base.override(**overrides) if overrides else base


_SEEDS = [
    dict(name="cao2015", reference="Cao, Chen & Khosla 2015, IJCV",
         description="IF neurons reset to zero, biases dropped, Poisson input spikes at rates proportional to "
                     "the input (c = 1/max|x|, so no rate is clipped), spike-count readout, no normalization: "
                     "one threshold for every neuron (threshold, default 1; Cao et al. set it by hand), above which "
                     "an activation saturates at one spike per step.",
         neuron="if", reset="zero", encoder="poisson", poisson_rate=None, readout="spike_count", bias="drop",
         norm="none",
         maxpool="spike_max"),
    dict(name="diehl2015-model", reference="Diehl et al. 2015, IJCNN",
         description="Cao's network with model-based weight normalization: each hidden layer's weights scaled so "
                     "that the largest input its weights allow is one threshold per step (Poisson input: spikes "
                     "of +-1/c, c = 1/max|x| so that the brightest input fires every step, as Diehl's 1 kHz at "
                     "1 ms, and no rate is clipped); the output layer keeps its trained weights, as in Diehl et "
                     "al.'s code (thresholds 1).",
         neuron="if", reset="zero", encoder="poisson", poisson_rate=None, readout="spike_count", bias="drop",
         norm="model", form="weight", maxpool="spike_max", normalize_output=False),
    dict(name="diehl2015-data", reference="Diehl et al. 2015, IJCNN",
         description="Cao's network with data-based normalization: thresholds at the maximum activation seen "
                     "on calibration data (threshold balancing); Poisson input at c = 1/max|x|, as diehl2015-model.",
         neuron="if", reset="zero", encoder="poisson", poisson_rate=None, readout="spike_count", bias="drop",
         norm="max", maxpool="spike_max"),
    dict(name="rueckauer2017", reference="Rueckauer et al. 2017, Front. Neurosci.",
         description="Reset by subtraction, biases as constant current, robust 99.9th-percentile "
                     "normalization, batch-norm folded, analog input, membrane readout, rate-gated max-pool.",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current",
         norm="percentile", percentile=99.9, maxpool="rate_gated"),
    dict(name="hu2018", reference="Hu, Tang & Pan 2018 (S-ResNet), arXiv:1805.01352",
         description="Rueckauer's neurons in the weight-normalized form: each branch into a residual add is "
                     "scaled by its own factor (shortcut normalization); thresholds lowered against the rate loss "
                     "that grows with depth, so the gain accumulated over depth d is 1 + c*d.",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current",
         norm="percentile", percentile=99.9, form="weight", depth_compensation=0.005, maxpool="rate_gated"),
    dict(name="hunsberger2016", reference="Hunsberger & Eliasmith 2016, arXiv:1611.05141",
         description="LIF neurons (tau_rc 20 ms, tau_ref 2 ms, dt 1 ms) with a 5 ms synaptic filter; soft-LIF "
                     "layers map exactly, ReLU layers are normalized as in rueckauer2017.",
         neuron="lif", reset="zero", tau_rc=0.02, tau_ref=0.002, dt=0.001, synapse_tau=0.005,
         encoder="analog", readout="membrane", bias="current", norm="percentile", percentile=99.9),
    dict(name="low-latency", reference="Bu et al. 2022 (ICLR) / Li et al. 2021: calibrated low-latency conversion",
         description="Rueckauer's network with per-channel 99.99th-percentile thresholds and membranes "
                     "initialized at half threshold (the 'shift' of clip-floor-shift), for few timesteps.",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current",
         norm="percentile", percentile=99.99, channel_wise=True, v_init=0.5, maxpool="rate_gated"),
    dict(name="li2021", reference="Li et al. 2021 (ICML), SNN calibration: potential correction",
         description="low-latency's network, then calibrated: layer by layer from the input, each channel's "
                     "initial membrane is corrected on calibration data so that its mean output after 8 steps "
                     "matches the ANN's activation (any ReLU ANN, no retraining).",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current",
         norm="percentile", percentile=99.99, channel_wise=True, v_init=0.5, maxpool="rate_gated",
         correction="potential", correction_timesteps=8),
    dict(name="bu2022", reference="Bu et al. 2022 (ICLR), optimal ANN-SNN conversion (QCFS)",
         description="For a QCFS-trained ANN: IF neurons with the trained QCFS thresholds, reset by subtraction, "
                     "membranes starting at half threshold, analog input, membrane readout. In L steps of a "
                     "constant input a neuron's mean output equals its QCFS activation exactly. A ReLU ANN is "
                     "refused (train it with act: qcfs, or use low-latency).",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current", norm="trained",
         v_init=0.5, maxpool="rate_gated"),
    dict(name="bu2022-calibrated", reference="Bu et al. 2022 (ICLR) + Li et al. 2021 (ICML), potential correction",
         description="bu2022, then calibrated: layer by layer from the input, each channel's initial membrane is "
                     "corrected on calibration data so that its mean output after 8 steps matches the ANN's "
                     "activation (Li et al.'s potential correction), against the error of the first steps.",
         neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current", norm="trained",
         v_init=0.5, maxpool="rate_gated", correction="potential", correction_timesteps=8),
]
_SEEDS.append(dict(
    name="wang2022", reference="Wang et al. 2022 (IJCAI), signed neuron with memory; on Bu et al. 2022's QCFS",
    description="bu2022 with signed neurons: after it has fired, a neuron whose membrane falls below 0 emits a "
                "negative spike and takes one spike back, so its net spike count follows the rounded sum of its "
                "input instead of keeping spikes sent too early (the unevenness error of few timesteps).",
    neuron="if", reset="subtract", encoder="analog", readout="membrane", bias="current", norm="trained",
    v_init=0.5, maxpool="rate_gated", signed=True))
_SEEDS.append(dict(
    name="fang2021", reference="Fang et al. 2021 (ICCV), PLIF: learnable membrane time constants",
    description="A directly trained SNN (act: plif, train.timesteps): batch norm folded, its PLIF neurons kept with "
                "their trained time constants, thresholds and hard reset; analog input into the first layer, "
                "spike max-pooling, the output layer's mean current as score, as trained. Any ANN is refused.",
    neuron="plif", reset="zero", encoder="analog", readout="membrane", bias="current", norm="trained",
    maxpool="spike_max"))
_SEEDS.append(dict(
    name="zhang2020", reference="Zhang & Li 2020 (NeurIPS), TSSL-BP",
    description="A directly trained SNN (act: tssl, train.timesteps; TSSL-BP): batch norm folded, its LIF neurons "
                "with first-order synapses kept with their time constants and thresholds, reset to zero, the "
                "post-synaptic potentials of their spikes passed on; analog input into the first layer, "
                "max-pooling of the PSPs, the output layer's mean current as score, as trained. Any ANN is refused.",
    neuron="tssl", reset="zero", encoder="analog", readout="membrane", bias="current", norm="trained",
    maxpool="spike_max"))
for _fields in _SEEDS:
    register_variant(make_recipe(_fields))

SEED_VARIANTS = ["cao2015", "diehl2015-model", "diehl2015-data", "rueckauer2017", "hu2018", "hunsberger2016"]
#: variants that need a QCFS-trained ANN (``act: qcfs``): their thresholds are its trained ones
QCFS_VARIANTS = ["bu2022", "bu2022-calibrated", "wang2022"]
#: variants for a directly trained SNN (``act: plif``, ``act: tssl``): no conversion, its trained neurons are kept
DIRECT_VARIANTS = ["fang2021", "zhang2020"]

__all__ = ["Recipe", "VariantError", "variants", "get_variant", "register_variant", "make_recipe",
           "SEED_VARIANTS", "QCFS_VARIANTS", "DIRECT_VARIANTS", "DEFAULT_TIMESTEPS"]
