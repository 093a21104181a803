"""Published checkpoints, declared as data (no name-specific loading code)."""

from __future__ import annotations

from robustlab.models.spec import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD, ModelSpec, WeightsSpec

_AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
_AKAMASTER_CITATION = 'Idelbayev, "Proper ResNet Implementation for CIFAR10/CIFAR100 in PyTorch", GitHub, 2018.'

# depth → (file, sha256, published test accuracy, parameters, FLOPs of one forward pass on one image, counted
# as the zoo counts them; tests/models/test_published_accuracy.py rebuilds the networks and checks both)
_AKAMASTER = {
    20: (
        "resnet20-12fca82f.th",
        "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
        0.9173,
        269_722,
        81_102_080,
    ),
    32: (
        "resnet32-d509ac18.th",
        "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850",
        0.9263,
        464_154,
        137_725_184,
    ),
    44: (
        "resnet44-014dd654.th",
        "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
        0.9310,
        658_586,
        194_348_288,
    ),
    56: (
        "resnet56-4bfd9763.th",
        "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
        0.9339,
        853_018,
        250_971_392,
    ),
}

PUBLISHED: tuple[ModelSpec, ...] = tuple(
    ModelSpec(
        name=f"resnet{depth}-akamaster",
        family="resnet",
        arch="resnet_cifar",
        arch_kwargs={"depth": depth, "width": 16},
        num_classes=len(CIFAR10_CLASSES),
        input_shape=(3, 32, 32),
        # The checkpoints were trained with ImageNet statistics (upstream trainer.py).
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        dataset="cifar10",
        weights=WeightsSpec(
            filename=file,
            sha256=sha,
            format="torch",
            location="pretrained-akamaster-resnet-cifar10",
            url=_AKAMASTER_URL + file,
            state_dict_key="state_dict",
            strip_prefix="module.",
            absent_buffers=("num_batches_tracked",),
            license="BSD-2-Clause",
        ),
        source="published",
        metrics={"test_accuracy": acc, "test_images": 10000, "parameters": params, "flops": flops},
        citation=_AKAMASTER_CITATION,
    )
    for depth, (file, sha, acc, params, flops) in _AKAMASTER.items()
)
