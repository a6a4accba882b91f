"""A project's settings, typed, with every default and every limit written once: the training
defaults (network size, patches, schedule), the learning loop (selection strategy, MC passes,
ensemble size, batch per round, retrain after K accepted), a points project's counting
model (target, input, steps, sigma) and the simulation form.

`ProjectSettings.of(project)` reads what the project stored (`project.settings["training"]`,
`["active_learning"]`) over the defaults; `clean_training` / `clean_loop` check changes and
raise `ValidationError` naming the field. The pages read the limits from here for their
inputs (LIMITS tables: field -> (lowest, highest))."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from app.errors import ValidationError
from models.strategies import CLASSES as _STRATEGY_CLASSES

STRATEGY_NAMES = tuple(_STRATEGY_CLASSES)
RETRAIN_MINUTES = 1.5         # time budget of the automatic fine-tuning in the loop


@dataclass(frozen=True)
class TrainingSettings:
    """A project's training defaults, sized for a 2-core CPU (models.training.TrainConfig
    fields of the same names)."""
    width: int = 16
    depth: int = 4
    patch: int = 128
    batch: int = 16
    epochs: int = 40
    steps_per_epoch: int = 40
    patience: int = 8
    lr: float = 2e-3
    dropout: float = 0.2
    pull: float = 50.0            # fine-tuning: pull back to the previous model's weights
                                  # (models.training.TrainConfig.pull; 0: none). A project
                                  # that stored none gets `default_pull(lr)` (training_from)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


TRAINING_LIMITS = {"width": (4, 128), "depth": (2, 6), "patch": (32, 1024), "batch": (1, 128),
                   "epochs": (1, 1000), "steps_per_epoch": (1, 10000), "patience": (1, 1000),
                   "lr": (1e-6, 1.0), "dropout": (0.0, 0.9), "pull": (0.0, 1000.0)}


@dataclass(frozen=True)
class LoopSettings:
    """The active-learning loop: how images are ranked and when the model is retrained."""
    # the default of a project that starts from no model (from a model: STARTED_LOOP below)
    # and of projects made before STARTED_LOOP: on the mixed DSB benchmark
    # (docs/benchmarks.md, issue 21) no uncertainty
    # strategy beat stratified random by more than the spread between seeds, and stratified
    # random with fewer cells first reached 95% of the whole-pool model in 5 of 6 seeds (3
    # from scratch, 3 from a start that never saw H&E; plain stratified in 3 of those 6),
    # with fewer corrections and a higher final macro-F1 from both starts
    strategy: str = "stratified-cheap"
    passes: int = 8               # MC-dropout passes T
    ensemble_size: int = 3        # N models for the ensemble strategy
    batch: int = 5                # images picked per round (strategies that pick in order)
    retrain_after: int = 10       # K accepted annotations start a retraining (0: never)
    unit: str = "image"           # what the queue serves: whole images, or regions of them
    region: int = 256             # side of a region in pixels (unit "region")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# What a project that starts from a model (the built-in one or another project's) queues and
# how it ranks, written into its settings when it is created (its owners may change them). On
# the mixed DSB benchmark from a start model that never saw H&E (docs/benchmarks.md, issue 21,
# 3 seeds), regions with stratified random reached 95% of the whole-pool model in every seed
# (88, 333 and 38 corrections) where whole images with stratified-cheap did in 2 of 3 (147,
# 413), and regions came out ahead of whole images in 6 of 9 (strategy, seed) pairs. A project
# that starts from none keeps LoopSettings' defaults: from scratch, whole images with
# stratified-cheap were the best measured.
STARTED_LOOP = {"unit": "region", "strategy": "stratified"}


def without_started_loop(stored: dict) -> dict:
    """Stored loop settings less the STARTED_LOOP values still in them: a project switched to
    counting (points) goes back to the defaults there, since STARTED_LOOP was measured on
    outlines (a value its owners chose stays)."""
    return {k: v for k, v in stored.items() if STARTED_LOOP.get(k, object()) != v}


LOOP_LIMITS = {"passes": (2, 64), "ensemble_size": (2, 8), "batch": (1, 100),
               "retrain_after": (0, 10_000), "region": (64, 2048)}
LOOP_UNITS = ("image", "region")


@dataclass(frozen=True)
class CountingSettings:
    """How a points project's counting model is trained (models.counting.CountingParams
    fields of the same names; the rest keep CountingParams' defaults)."""
    target: str = "centres"          # "centres": a heat-map whose peaks are the cells;
                                     # "density": a Gaussian of mass 1 per cell, integrated
    input_mapping: str | None = "auto"  # None: the image's channels as they are;
                                        # "nucleus-contrast-v1": the nuclear stain
                                        # (haematoxylin of an H&E image, grey otherwise);
                                        # "auto": app.services.counting.choose_input
    steps: int = 400
    sigma: float = 3.0               # Gaussian std of one cell in the target (px)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


COUNTING_TARGETS = ("centres", "density")
AUTO = "auto"                           # the trainer chooses (app.services.counting.choose_input)
STAIN = "nucleus-contrast-v1"           # models.nucleus_contrast.NUCLEUS_CONTRAST
# what a counting model may read: None is the image's own channels, the names are
# models.inference.INPUT_MAPPINGS
COUNTING_INPUTS = (AUTO, None, STAIN)
COUNTING_LIMITS = {"steps": (10, 20_000), "sigma": (1.0, 20.0)}
NO_MAPPING = ("none", "channels")       # what the CLI and forms may write for None


@dataclass(frozen=True)
class SimulationSettings:
    """The simulation form's starting values."""
    strategies: tuple = ("random", "entropy", "bald")
    initial: int = 5
    batch: int = 5
    rounds: int = 5
    seeds: int = 2
    test_fraction: float = 0.25
    passes: int = 8
    unit: str = "image"
    start: str = "scratch"
    cost: str = "images"
    region: int = 256


SIMULATION_LIMITS = {"initial": (1, 1000), "batch": (1, 1000), "rounds": (1, 1000),
                     "seeds": (1, 1000), "test_fraction": (0.05, 0.9), "passes": (2, 64)}
# Simulations train many small models: a lighter schedule than a project's own training.
# a simulation's rounds fine-tune as a project does by default (pull 50 at lr 2e-3); one of a
# project's own loop takes the project's lr and pull (app.services.simulation.round_settings)
SIMULATION_TRAINING = TrainingSettings(batch=8, epochs=2, steps_per_epoch=30, patience=2,
                                       lr=2e-3, pull=50.0)


@dataclass(frozen=True)
class ProjectSettings:
    training: TrainingSettings = field(default_factory=TrainingSettings)
    loop: LoopSettings = field(default_factory=LoopSettings)

    @classmethod
    def of(cls, project) -> "ProjectSettings":
        """What `project` stored over the defaults (unknown stored keys are ignored)."""
        stored = project.settings or {}
        return cls(training=training_from(stored.get("training") or {}),
                   loop=_known(LoopSettings, stored.get("active_learning") or {}))


PULL_PER_STEP = 0.1   # the default pull's lr x pull: each step moves a weight a tenth of the
                      # way back (on the mixed DSB benchmark, docs/benchmarks.md, issue 21,
                      # fine-tuning rounds stayed steady with it and forgot less)


def default_pull(lr: float) -> float:
    """The pull a project gets unless its owners set one: 50 at learning rates up to the
    default (2e-3), lower above it so that lr x pull stays at PULL_PER_STEP."""
    return min(TrainingSettings.pull, float(f"{PULL_PER_STEP / lr:.3g}"))


def training_from(values: dict) -> TrainingSettings:
    """Stored training settings over the defaults (unknown keys ignored); without a stored
    pull, the learning rate's `default_pull`."""
    settings = _known(TrainingSettings, values)
    if "pull" not in values:
        settings = dataclasses.replace(settings, pull=default_pull(settings.lr))
    return settings


def _known(kind, values: dict):
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


def _number(key: str, value, lo, hi):
    """`value` as the kind of number the limits are (int or float), within them."""
    whole = isinstance(lo, int) and isinstance(hi, int)
    try:
        number = int(value) if whole else float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{key} must be a {'whole ' if whole else ''}number.") from None
    if not lo <= number <= hi:
        raise ValidationError(f"{key} must be between {lo} and {hi}.")
    return number


def clean_training(changes: dict) -> dict:
    """Checked training settings (only the keys given)."""
    clean = {}
    for key, value in changes.items():
        if key not in TRAINING_LIMITS:
            raise ValidationError(f"Unknown training setting {key!r} (settings: "
                                  f"{', '.join(TRAINING_LIMITS)}).")
        clean[key] = _number(key, value, *TRAINING_LIMITS[key])
    return clean


def counting_from(values: dict) -> CountingSettings:
    """Stored counting settings over the defaults (unknown keys ignored)."""
    return _known(CountingSettings, values)


def clean_counting(changes: dict) -> dict:
    """Checked counting settings (only the keys given)."""
    clean = {}
    for key, value in changes.items():
        if key == "target":
            value = str(value).strip().lower()
            if value not in COUNTING_TARGETS:
                raise ValidationError(f"The counting target must be one of "
                                      f"{', '.join(COUNTING_TARGETS)}.")
            clean[key] = value
        elif key == "input_mapping":
            value = None if value is None else str(value).strip().lower()
            value = None if value in NO_MAPPING else value
            if value not in COUNTING_INPUTS:
                names = ", ".join(n or "none" for n in COUNTING_INPUTS)
                raise ValidationError(f"The counting input must be one of {names}.")
            clean[key] = value
        elif key in COUNTING_LIMITS:
            clean[key] = _number(key, value, *COUNTING_LIMITS[key])
        else:
            raise ValidationError(f"Unknown counting setting {key!r} (settings: target, "
                                  f"input_mapping, {', '.join(COUNTING_LIMITS)}).")
    return clean


def clean_loop(current: LoopSettings, changes: dict) -> LoopSettings:
    """`current` with `changes` applied, checked."""
    clean = {}
    for key, value in changes.items():
        if key == "strategy":
            if value not in STRATEGY_NAMES:
                raise ValidationError(f"Strategy must be one of {', '.join(STRATEGY_NAMES)}.")
            clean[key] = value
        elif key == "unit":
            if value not in LOOP_UNITS:
                raise ValidationError(f"The queue's unit must be one of {', '.join(LOOP_UNITS)}.")
            clean[key] = value
        elif key in LOOP_LIMITS:
            clean[key] = _number(key, value, *LOOP_LIMITS[key])
        else:
            raise ValidationError(f"Unknown active-learning setting {key!r}.")
    return dataclasses.replace(current, **clean)
