"""Training: standard supervised training with resumable checkpoints, and the zoo builder."""

from robustlab.train.augment import random_crop_flip
from robustlab.train.loop import EpochMetrics, TrainConfig, TrainResult, accuracy_of, train_model

__all__ = ["EpochMetrics", "TrainConfig", "TrainResult", "accuracy_of", "random_crop_flip", "train_model"]
