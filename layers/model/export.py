"""Build the model directory the function serves from (``make model``).

Runs at build time only (the Docker build stage, ``make model``), never in Lambda: it is the one
place that needs TensorFlow and the network. Weights and the class index are fetched by Keras'
own loaders (``MobileNetV2(weights="imagenet")`` and ``get_file`` with Keras' md5), so an offline
machine only has to seed ``$KERAS_HOME/models`` with the files Keras would have cached.

Output (``--out``, default ``build/model``):

- ``mobilenet_v2.keras``   the Keras model, for the ``keras`` backend
- ``mobilenet_v2.tflite``  the same model converted to fp32 TFLite, for the ``litert`` backend
- ``labels.json``          the 1000 ImageNet classes in output order: ``[[wnid, label], ...]``
- ``manifest.json``        name, version, input, preprocessing, versions and sha256 of every file

Every model takes what the decoder makes, uint8 RGB pixels of shape (n, 224, 224, 3), and scales
them itself (``taking_pixels``: a cast and MobileNetV2's ``x / 127.5 - 1`` as a Keras ``Rescaling``
layer in the graph), so no caller ever scales, or scales twice.

``make model`` runs ``training.imagenet``: this export, then (optionally) a temperature and the
serving cost, which need the training tools; the image's export stage runs this module alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from handler.contract import IMAGENET_MODEL
from handler.recognition.manifest import DTYPE, KERAS_FILE, LABELS_FILE, TFLITE_FILE
from layers.model import manifest_writer

# TensorFlow prints its oneDNN notice through absl before TF_CPP_MIN_LOG_LEVEL applies; the export
# runs no benchmark, so the plain kernels are fine and the build log stays quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

MODEL_NAME = IMAGENET_MODEL["name"]

# Keras' own address and checksum for the class index (keras.applications.imagenet_utils).
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def fetch_labels(keras) -> list[list[str]]:
    """The 1000 ``[wnid, label]`` pairs in class order, via Keras' cache and md5 check."""
    path = keras.utils.get_file(
        "imagenet_class_index.json",
        CLASS_INDEX_URL,
        cache_subdir="models",
        file_hash=CLASS_INDEX_MD5,
    )
    index = json.loads(Path(path).read_text())
    return [index[str(class_id)] for class_id in range(len(index))]


CONVERTER_CHATTER = ("fully_quantize:", "INFO: ", "I0000 ", "W0000 ", "WARNING: All log messages before")


def converter_chatter(line: str) -> bool:
    """What the TFLite converter's C++ and absl print on every conversion (its settings, absl's
    start-up notice), not errors: those arrive as the converter's exception."""
    return line.startswith(CONVERTER_CHATTER)


PIXELS_DTYPE = DTYPE  # what the decoder makes and the manifest states


def taking_pixels(keras, model):
    """``model`` (float input in [-1, 1], MobileNetV2's) behind its own preprocessing: the result takes
    uint8 RGB pixels, (n, 224, 224, 3), and casts and scales them in the graph (``Rescaling`` casts
    to float32, then ``x / 127.5 - 1``), as keras-io's transfer-learning examples do: a model that
    takes raw data. Its outputs are ``model``'s."""
    pixels = pixel_input(keras, model.input_shape[1:])
    return keras.Model(pixels, model(pixel_scaling(keras)(pixels)), name=f"{model.name}_on_pixels")


def pixel_input(keras, shape=(224, 224, 3)):
    """The input every model takes: uint8 RGB pixels as the decoder makes them."""
    return keras.Input(shape, dtype=PIXELS_DTYPE, name="pixels")


def pixel_scaling(keras):
    """MobileNetV2's preprocessing as a layer: uint8 [0, 255] cast to float32, then ``x / 127.5 - 1``
    (Keras ``mode="tf"``: [-1, 1]). The export's and training's models apply it first, in the graph."""
    return keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")


def scaled_part(model):
    """The float model inside one ``taking_pixels`` made (what comes after its ``scale`` layer)."""
    return next(layer for layer in model.layers if hasattr(layer, "layers") and layer.layers)


def to_tflite(tf, model, calibration: np.ndarray | None = None) -> bytes:
    """fp32 TFLite with a fixed input size (the batch dimension stays resizable at runtime); with
    ``calibration`` photos (uint8, what the model takes), full-integer int8 (float output kept).

    The input stays uint8 in both: the converter leaves a graph input that is not float as it is
    (``inference_input_type`` applies to float inputs only); with int8 it adds a ``CAST`` to float
    and a ``QUANTIZE`` of scale 1, zero point -128 (exact for 0..255), and the scaling's ``MUL`` and
    ``ADD`` run in int8. Quiet: Keras prints every captured tensor, the converter its settings
    (``LOG_LEVEL=DEBUG`` shows them)."""
    from handler.recognition.notices import native_notices_hidden

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with (
        contextlib.redirect_stdout(io.StringIO()),
        native_notices_hidden(converter_chatter),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


INT8_FILE = "mobilenet_v2_int8.tflite"
CALIBRATION_IMAGES = 100
DEFAULT_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "hymenoptera" / "train"


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def quantize(tf, model, labels: list[list[str]], folder: Path, out_dir: Path) -> dict:
    """Full-integer int8 ``.tflite`` (uint8 input, float output), calibrated on ImageNet photos
    from ``folder``; its top-1 agreement with fp32 is measured on the photos not used to calibrate."""
    from handler.recognition import imaging
    from handler.recognition.model import LiteRTBackend

    limits = imaging.DecodeLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)
    arrays = np.stack([imaging.to_pixels(p.read_bytes(), limits) for p in photos(folder)])
    if len(arrays) < 2 * CALIBRATION_IMAGES:
        raise SystemExit(f"--quantize int8 needs {2 * CALIBRATION_IMAGES}+ photos in {folder}")
    rng = np.random.default_rng(7)
    order = rng.permutation(len(arrays))
    calibration, held_out = arrays[order[:CALIBRATION_IMAGES]], arrays[order[CALIBRATION_IMAGES:]]
    (out_dir / INT8_FILE).write_bytes(to_tflite(tf, model, calibration))
    fp32 = LiteRTBackend(out_dir / TFLITE_FILE, 2).outputs(held_out)[0]
    int8 = LiteRTBackend(out_dir / INT8_FILE, 2).outputs(held_out)[0]
    return {
        "calibration": f"{CALIBRATION_IMAGES} photos of {folder.name} (ImageNet classes), seed 7",
        "images": len(held_out),
        "top1_agreement": float((fp32.argmax(1) == int8.argmax(1)).mean()),
        "max_abs_probability_difference": float(np.abs(fp32 - int8).max()),
    }


def export(out_dir: Path, version: str, int8_photos: Path | None = None) -> dict:
    """Write the model directory and return its manifest (``training.imagenet`` adds a temperature
    and the serving cost to it for ``make model``)."""
    import keras
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    model = taking_pixels(keras, keras.applications.MobileNetV2(weights="imagenet"))
    labels = fetch_labels(keras)
    if len(labels) != model.output_shape[-1]:
        raise SystemExit(f"class index has {len(labels)} classes, the model {model.output_shape[-1]}")

    model.save(out_dir / KERAS_FILE)
    (out_dir / TFLITE_FILE).write_bytes(to_tflite(tf, model))
    (out_dir / LABELS_FILE).write_text(json.dumps(labels, indent=0) + "\n")

    fields = {
        "name": MODEL_NAME,
        "version": version,
        "source": 'keras.applications.MobileNetV2(weights="imagenet")',
        "input": dict(manifest_writer.INPUT),
        "preprocessing": dict(manifest_writer.PREPROCESSING),
        "output": {"classes": len(labels), "activation": "softmax"},
        "built_with": {
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "python": sys.version.split()[0],
        },
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    files = [KERAS_FILE, TFLITE_FILE, LABELS_FILE]
    if int8_photos is not None:
        fields["artifacts"] = {"keras": KERAS_FILE, "tflite": TFLITE_FILE, "tflite_int8": INT8_FILE}
        fields["card"] = {"int8": quantize(tf, model, labels, int8_photos, out_dir)}
        files.append(INT8_FILE)
    return manifest_writer.write(out_dir, fields, files)


def arguments() -> argparse.ArgumentParser:
    """The export's options (``training.imagenet`` adds its own to the same parser)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("build/model"), help="model directory to write")
    parser.add_argument(
        "--version", default=IMAGENET_MODEL["version"], help="model version recorded in the manifest"
    )
    parser.add_argument("--quantize", choices=["int8"], help="also write a full-integer int8 .tflite")
    parser.add_argument(
        "--calibration-photos", type=Path, default=DEFAULT_PHOTOS, help="ImageNet photos to calibrate int8 on"
    )
    return parser


def staged(args: argparse.Namespace) -> tuple[Path, dict]:
    """The export written into a sibling temporary folder (``replace`` swaps it in): a failed
    export never leaves a half-built model."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=args.out.parent))
    return staging, export(staging, args.version, args.calibration_photos if args.quantize else None)


def replace(staging: Path, out: Path, manifest: dict) -> None:
    """Swap the staged model in (``check/`` and other folders included) and say what was written."""
    staging.chmod(0o755)  # mkdtemp makes it private; the image copies it for the Lambda user
    manifest_writer.replace_folder(staging, out)
    sizes = ", ".join(f"{name} {info['bytes'] / 1e6:.1f} MB" for name, info in manifest["files"].items())
    print(f"model {manifest['name']} {manifest['version']} written to {out}: {sizes}")


def main(argv: list[str] | None = None) -> int:
    """The export alone: what the image's export stage runs (``make model`` runs
    ``training.imagenet``, which also measures the serving cost synth holds the deployment to)."""
    args = arguments().parse_args(argv)
    staging, manifest = staged(args)
    replace(staging, args.out, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
