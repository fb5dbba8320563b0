"""Where MobileNetV2's ImageNet weights come from, found before Keras is imported.

Keras reads ``KERAS_HOME`` once, at import, and downloads what its cache lacks. An offline machine
(these ones, a laptop on a train) has the files beside the checkout instead, in ``../shared/models``,
named exactly as Keras caches them. ``locate()`` applies the rule the README states, in order:

1. ``$KERAS_HOME/models`` holds both files: used as it is;
2. ``../shared/models`` beside the checkout holds them: linked into ``build/keras-home/models``
   (what ``make keras-cache`` does) and ``KERAS_HOME`` pointed there;
3. Keras' own cache (``~/.keras/models``) holds them: used;
4. otherwise Keras may download them; where it cannot (offline), ``WeightsMissing`` says what to set,
   instead of a download traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_MODELS = REPO.parent / "shared" / "models"
LOCAL_KERAS_HOME = REPO / "build" / "keras-home"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
CLASS_INDEX_FILE = "imagenet_class_index.json"
FILES = (WEIGHTS_FILE, CLASS_INDEX_FILE)


class WeightsMissing(RuntimeError):
    """The weights are nowhere Keras will look, and downloading them failed."""


def _complete(models: Path) -> bool:
    return all((models / name).is_file() for name in FILES)


def locate(environ: dict[str, str] | None = None) -> str:
    """Point ``KERAS_HOME`` (in ``environ``, default ``os.environ``) at a cache holding the weights
    when one exists; returns a sentence saying which, for a progress line or a test."""
    environ = os.environ if environ is None else environ
    given = environ.get("KERAS_HOME", "").strip()
    if given and _complete(Path(given) / "models"):
        return f"MobileNetV2 weights: $KERAS_HOME/models ({given})"
    if _complete(SHARED_MODELS):
        models = LOCAL_KERAS_HOME / "models"
        models.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            link = models / name
            if not link.is_file():
                link.unlink(missing_ok=True)  # a dangling link from a moved checkout
                with contextlib.suppress(FileExistsError):  # another imgrec linked it meanwhile
                    link.symlink_to(SHARED_MODELS / name)
        note = f" ($KERAS_HOME={given} lacks them)" if given else ""
        environ["KERAS_HOME"] = str(LOCAL_KERAS_HOME)
        return f"MobileNetV2 weights: {SHARED_MODELS}, linked into {models}{note}"
    home = Path(given) if given else Path.home() / ".keras"
    return f"MobileNetV2 weights: Keras' cache {home / 'models'} (downloaded there if missing)"


def explain(error: BaseException) -> WeightsMissing:
    """What to do when Keras could not fetch a file (offline, or a bad checksum)."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return WeightsMissing(
        f"MobileNetV2's ImageNet weights could not be loaded ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else 'no detail'}). Offline, put "
        f"{WEIGHTS_FILE} and {CLASS_INDEX_FILE} in {home}/models, or set KERAS_HOME to a folder "
        f"whose models/ holds them, or keep ../shared/models beside the checkout ({SHARED_MODELS})."
    )


# Keras' own address for the weights (keras.applications.mobilenet_v2.BASE_WEIGHT_PATH).
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + WEIGHTS_FILE


def ensure() -> str:
    """``locate()``, then make sure Keras has both files (its cache, or one download attempt):
    ``WeightsMissing`` says what to set rather than a download traceback half-way into training."""
    where = locate()
    import keras

    from layers.model.export import fetch_labels

    try:
        keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models")
        fetch_labels(keras)
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure ...")
        raise explain(error) from None
    return where
