"""Training: the loop (resumable checkpoints, schedules, monitor, DDP), the registered training methods (standard,
pgd-at, fgsm-rs, trades in :mod:`~robustlab.train.methods`; each other method in its own module: sia, reweighted,
advprop and mdprop, multibn, augmax and augmix, nofrost and mixed-at, iat, pyramid-at, dial) and the zoo builder."""

from robustlab.train import advprop as _advprop  # noqa: F401 - registers the advprop and mdprop methods
from robustlab.train import augmax as _augmax  # noqa: F401 - registers the augmax and augmix methods
from robustlab.train import dial as _dial  # noqa: F401 - registers the dial method
from robustlab.train import iat as _iat  # noqa: F401 - registers the iat method
from robustlab.train import multibn as _multibn  # noqa: F401 - registers the multibn method
from robustlab.train import nofrost as _nofrost  # noqa: F401 - registers the nofrost and mixed-at methods
from robustlab.train import pyramid as _pyramid  # noqa: F401 - registers the pyramid-at method
from robustlab.train import reweight as _reweight  # noqa: F401 - registers the reweighted method
from robustlab.train import sia as _sia  # noqa: F401 - registers the sia method
from robustlab.train.augment import random_crop_flip
from robustlab.train.loop import (
    CatastrophicOverfittingWarning,
    EpochMetrics,
    LabelSmoothingWarning,
    StepReport,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    accuracy_of,
    train_model,
)
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod, get_method

__all__ = [
    "TRAINING_METHODS",
    "CatastrophicOverfittingWarning",
    "EpochMetrics",
    "LabelSmoothingWarning",
    "StepContext",
    "StepOutput",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "TrainingMethod",
    "accuracy_of",
    "get_method",
    "random_crop_flip",
    "train_model",
]
