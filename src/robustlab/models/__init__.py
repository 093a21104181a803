"""Models: the input-contract adapter, architectures, specs, weights and the zoo registry."""

from robustlab.models.adapter import (
    ModelAdapter,
    ProbabilityOutputWarning,
    check_images,
    eval_mode,
    predict_logits,
)
from robustlab.models.archs import ARCHITECTURES, build_architecture
from robustlab.models.loading import MODELS, ZOO_DIR, build_model, list_models, load_model
from robustlab.models.spec import ModelSpec, WeightsSpec
from robustlab.models.weights import read_safetensors, read_torch_checkpoint, save_weights

__all__ = [
    "ARCHITECTURES",
    "MODELS",
    "ZOO_DIR",
    "ModelAdapter",
    "ModelSpec",
    "ProbabilityOutputWarning",
    "WeightsSpec",
    "build_architecture",
    "build_model",
    "check_images",
    "eval_mode",
    "list_models",
    "load_model",
    "predict_logits",
    "read_safetensors",
    "read_torch_checkpoint",
    "save_weights",
]
