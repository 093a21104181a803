"""The reference side of the corruption benchmark and validation: runs in a *separate* environment.

``imagecorruptions`` (Michaelis et al., 2019; the ImageNet-C corruptions packaged) is not a dependency of
robustlab. Install it in its own virtual environment, without torch:

    python3 -m venv /work/corr-venv
    /work/corr-venv/bin/pip install imagecorruptions scikit-image scipy numpy opencv-python-headless wand

This file imports numpy, OpenCV, scikit-image and imagecorruptions only (never torch or robustlab); the
scripts ``corruptions.py`` and ``validate_corruptions.py`` call it with that environment's python:

    python _imagecorruptions_ref.py probe OUT.json          # which corruptions fail unpatched, versions
    python _imagecorruptions_ref.py time IMAGES.npy SEV OUT.json [N]
    python _imagecorruptions_ref.py outputs IMAGES.npy OUT.npz  # float outputs, severities 1..5, seeded

With current numpy (2.x) and scikit-image (>= 0.19) three corruptions fail as released: ``fog`` uses
``np.float_`` (removed in numpy 2.0) and ``glass_blur`` and ``gaussian_blur`` pass ``multichannel=True`` to
``skimage.filters.gaussian`` (removed in scikit-image 0.19). ``patch()`` restores them without changing
any formula: ``np.float_ = np.float64`` and a ``gaussian`` wrapper that maps ``multichannel=True`` to
``channel_axis=-1``. (On setuptools >= 81 the package does not even import, as it needs ``pkg_resources``.)
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np

NAMES = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("imagecorruptions", "numpy", "scipy", "scikit-image", "opencv-python-headless", "pillow", "setuptools"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def probe() -> dict[str, str]:
    """Run each corruption once, unpatched, on one image; return the error of those that fail."""
    import imagecorruptions as ic

    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    failures = {}
    for name in NAMES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ic.corrupt(img, 3, name)
        except Exception as exc:  # record whatever breaks
            failures[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    return failures


def patch() -> None:
    """Make the three broken corruptions run again without changing their formulas."""
    import imagecorruptions.corruptions as icc
    from skimage.filters import gaussian as _gaussian

    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]

    def gaussian(image, *args, multichannel=None, **kwargs):  # type: ignore[no-untyped-def]
        if multichannel:
            kwargs["channel_axis"] = -1
        return _gaussian(image, *args, **kwargs)

    icc.gaussian = gaussian


def time_all(images: np.ndarray, severity: int, n: int) -> dict[str, dict[str, float]]:
    """Per-image time of ``imagecorruptions.corrupt`` on ``n`` images, one image at a time (wall and CPU)."""
    import imagecorruptions as ic

    patch()
    out = {}
    warnings.simplefilter("ignore")
    for name in NAMES:
        ic.corrupt(images[0], severity, name)  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        for im in images[:n]:
            ic.corrupt(im, severity, name)
        out[name] = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0, "n": n}
    return out


def outputs(images: np.ndarray) -> dict[str, np.ndarray]:
    """Float outputs (0..255, before ``corrupt``'s uint8 cast) of every corruption and severity, seeded."""
    import imagecorruptions.corruptions as icc
    from PIL import Image

    patch()
    warnings.simplefilter("ignore")
    out: dict[str, np.ndarray] = {}
    for name in NAMES:
        fn = getattr(icc, name)
        for s in range(1, 6):
            np.random.seed(1000 * s + NAMES.index(name))
            res = []
            for im in images:
                arg = Image.fromarray(im) if name in ("jpeg_compression", "pixelate", "spatter") else im
                res.append(np.asarray(fn(arg, s), dtype=np.float64))
            out[f"{name}/{s}"] = np.stack(res)
    # motion blur with fixed angles, to check the kernel itself (no randomness)
    for angle in (-40.0, -10.0, 0.0, 25.0, 45.0):
        out[f"motion_kernel/{angle}"] = np.stack(
            [icc._motion_blur(im.astype(np.float64), radius=15, sigma=8, angle=angle) for im in images]
        )
    return out


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "probe":
        result = {"versions": versions(), "fail_unpatched": probe()}
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
    elif cmd == "time":
        images = np.load(sys.argv[2])
        n = int(sys.argv[5]) if len(sys.argv) > 5 else len(images)
        with open(sys.argv[4], "w") as f:
            json.dump(time_all(images, int(sys.argv[3]), n), f)
    elif cmd == "outputs":
        np.savez_compressed(sys.argv[3], **outputs(np.load(sys.argv[2])))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
