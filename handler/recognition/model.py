"""The model directory, its manifest, the two inference backends and one ``classify(batch)``.

Knows nothing of events or Pillow: it takes the decoder's uint8 RGB pixels, arrays of shape
(n, 224, 224, 3), as they are (every model scales them itself, inside its graph) and returns ranked
labels. ``load_classifier`` runs once, where the
function starts, and reads only the model directory: no network, no writes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from handler.config import check_engine
from handler.recognition import manifest
from handler.recognition.manifest import LABELS_FILE, MANIFEST_FILE, IntegrityError, ManifestError, ModelError
from handler.recognition.notices import native_notices_hidden

__all__ = [
    "Classifier",
    "IntegrityError",
    "ManifestError",
    "ModelError",
    "ModelInfo",
    "Prediction",
    "load_classifier",
]


@dataclass(frozen=True)
class Prediction:
    """One ranked class (``http.answers.Prediction`` documents the same shape for OpenAPI)."""

    label: str
    probability: float
    class_id: str | None = None  # WordNet id of an ImageNet class; None for your own classes

    def to_dict(self) -> dict[str, str | float]:
        answer: dict[str, str | float] = {"label": self.label, "probability": round(self.probability, 6)}
        if self.class_id:
            answer["class_id"] = self.class_id
        return answer


@dataclass(frozen=True)
class ModelInfo:
    """What answered: reported in every prediction so results can be traced to a model build."""

    name: str
    version: str
    backend: str  # one of contract.BACKENDS

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Backend(Protocol):
    """An inference engine: a batch of preprocessed images in, softmax probabilities out, and, for
    a model that carries an in-domain detector (``imgrec train``'s), each image's distance to what
    it was trained on."""

    input_shape: tuple[int, ...]  # one image's shape, e.g. (224, 224, 3)
    input_dtype: str  # the pixels' type the model takes: "uint8" (the decoder's, scaled in the graph)
    classes: int  # outputs per image
    detects: bool  # it answers a distance too

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, 224, 224, 3) uint8 -> (n, classes) probabilities, (n,) distances or None."""
        ...


def _split(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """A model's outputs as (probabilities, distances): the distance is the one-wide output (a
    converter orders outputs as it likes; no classifier has one class)."""
    if len(outputs) == 1:
        return outputs[0], None
    if len(outputs) != 2 or sum(o.shape[-1] == 1 for o in outputs) != 1:
        raise ManifestError(
            f"the model has outputs {[o.shape for o in outputs]}: expected probabilities and one distance"
        )
    distance = next(o for o in outputs if o.shape[-1] == 1)
    probabilities = next(o for o in outputs if o.shape[-1] != 1)
    return probabilities, distance.reshape(-1)


class LiteRTBackend:
    """ai-edge-litert with XNNPACK (the default): small, fast to import, no TensorFlow.

    Batches run in chunks of ``CHUNK`` images: on CPU, XNNPACK's throughput stops growing near
    batch 8 while its activation arena keeps growing with the batch (about 10 MB per image).
    """

    CHUNK = 8

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with native_notices_hidden():  # the delegate is made (and announced, once) at allocation
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self._input = inputs[0]["index"]
        self._outputs = [output["index"] for output in outputs]
        self.input_shape = tuple(int(n) for n in inputs[0]["shape"][1:])
        self.input_dtype = np.dtype(inputs[0]["dtype"]).name
        self.classes = int(max(output["shape"][-1] for output in outputs))
        self.detects = len(outputs) == 2  # a distance beside the probabilities
        self._batch_size = int(inputs[0]["shape"][0])  # allocated above at the model's own batch

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        chunks = [batch[start : start + self.CHUNK] for start in range(0, len(batch), self.CHUNK)]
        answered = (
            [self._invoke(chunk) for chunk in chunks] if len(batch) > self.CHUNK else [self._invoke(batch)]
        )
        joined = [np.concatenate([outputs[i] for outputs in answered]) for i in range(len(self._outputs))]
        return _split(joined)

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """One interpreter call. Not thread-safe, and need not be: Lambda runs one event at a time
        per process (the local server gives each concurrent request its own function)."""
        if len(batch) != self._batch_size:  # reallocate only when the batch size changes
            self._interpreter.resize_tensor_input(self._input, list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch_size = len(batch)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(index).copy() for index in self._outputs]


class KerasBackend:
    """TensorFlow + Keras: the exported ``.keras`` file, called through one traced function.

    ``model.predict`` builds a data pipeline per call (tens of ms); a ``tf.function`` with a fixed
    signature is traced once at warm-up and then costs only the math.
    """

    def __init__(self, path: Path, threads: int) -> None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process (tests load both backends)
            pass
        import keras

        model = keras.models.load_model(path, compile=False)
        self.input_shape = tuple(model.input_shape[1:])
        self.input_dtype = str(model.inputs[0].dtype)
        shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
        self.classes = int(max(shape[-1] for shape in shapes))
        self.detects = len(shapes) == 2
        signature = tf.TensorSpec(shape=(None, *model.input_shape[1:]), dtype=self.input_dtype)
        self._infer = tf.function(lambda x: model(x, training=False), input_signature=[signature])

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        answered = self._infer(batch)
        return _split(
            [o.numpy() for o in answered] if isinstance(answered, (list, tuple)) else [answered.numpy()]
        )


ENGINES: dict[str, type[LiteRTBackend] | type[KerasBackend]] = {
    "litert": LiteRTBackend,
    "keras": KerasBackend,
}


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling applied to probabilities: ``softmax(log(p) / T)``, which equals
    ``softmax(logits / T)`` for a softmax output (the constant of the log-softmax cancels) and is
    the same monotone map for a flip-averaged one. ``T > 1`` softens over-confident answers; the
    ranking never changes. ``T == 1`` returns the input unchanged."""
    if temperature == 1:
        return probabilities
    scaled = np.log(np.clip(probabilities.astype(np.float64), 1e-30, None)) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


class Classifier:
    """A backend plus its labels: the only thing the entry points call. Answers are calibrated
    by the manifest's ``calibration.temperature`` when it has one (fitted by ``imgrec train`` on
    the validation split), so ``min_confidence`` compares a calibrated probability."""

    def __init__(
        self,
        backend: Backend,
        labels: list[tuple[str | None, str]],
        info: ModelInfo,
        manifest: dict | None = None,
    ) -> None:
        self._backend = backend
        self._labels = labels
        self.labels = [label for _, label in labels]  # read per request (top_k bound): built once
        self.info = info
        self.manifest = manifest or {}  # what the model directory says of itself (and its card)
        self.temperature = float(self.manifest.get("calibration", {}).get("temperature", 1.0))
        # Above this distance an image is unlike anything the model was trained on (``in_domain``
        # false); a model without a detector (the ImageNet export) knows no outside.
        self.in_domain_threshold: float | None = self.manifest.get("in_domain", {}).get("threshold")
        self.calls = 0  # model invocations so far: lets tests and logs see that batches stay batched

    @property
    def entries(self) -> list[tuple[str | None, str]]:
        """``(class_id, label)`` in output order."""
        return list(self._labels)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated softmax outputs for ``batch`` (evaluation needs them all, not a ranking)."""
        return self.outputs(batch)[0]

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated softmax outputs and each image's in-domain distance (None: no detector)."""
        if batch.dtype != self._backend.input_dtype:  # never cast: floats in [-1, 1] would wrap
            raise TypeError(
                f"the model takes {self._backend.input_dtype} pixels as decoded (imaging.to_pixels) and "
                f"scales them itself; got {batch.dtype}"
            )
        probabilities, distances = self._backend.outputs(batch)
        return calibrated(probabilities, self.temperature), distances

    def classify(self, batch: np.ndarray, top_k: int = 5) -> list[list[Prediction]]:
        """Rank the classes of each image in ``batch`` (one model call for the whole batch)."""
        return [ranked for ranked, _ in self.assess(batch, top_k)]

    def assess(self, batch: np.ndarray, top_k: int = 5) -> list[tuple[list[Prediction], bool]]:
        """Each image's ranked classes and whether it looks like what the model was trained on
        (``in_domain``; always true without a detector): one model call for the whole batch."""
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        probabilities, distances = self.outputs(batch)
        self.calls += 1
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        inside = self.inside(distances, len(batch))
        return [
            (
                [
                    Prediction(
                        label=self._labels[i][1], probability=float(row[i]), class_id=self._labels[i][0]
                    )
                    for i in indices
                ],
                bool(known),
            )
            for row, indices, known in zip(probabilities, top, inside, strict=True)
        ]

    def inside(self, distances: np.ndarray | None, count: int) -> np.ndarray:
        """Which distances are within the detector's threshold (all, without one). NaN is outside."""
        if distances is None or self.in_domain_threshold is None:
            return np.ones(count, dtype=bool)
        return np.asarray(distances <= self.in_domain_threshold)

    def warm_up(self, input_shape: tuple[int, int, int]) -> float:
        """Run one inference so the first request does not pay for allocation or tracing."""
        started = time.perf_counter()
        self.classify(np.zeros((1, *input_shape), dtype=self._backend.input_dtype), top_k=1)
        return (time.perf_counter() - started) * 1000


def load_classifier(model_dir: Path, backend: str, threads: int, precision: str = "fp32") -> Classifier:
    """Verify and load the model for ``backend`` (``litert`` at ``fp32`` or ``int8``), then warm it up.

    A model directory that cannot answer right never serves: the manifest's fields are checked (as
    ``manifest.validate`` does), the files this backend reads against their sha256 and
    ``labels.json`` parsed, once each; then the loaded model's input (shape and dtype) must be the
    manifest's (what ``imaging`` produces: uint8 pixels) and its outputs as many as the labels.
    """
    try:
        check_engine(backend, precision)
    except ValueError as error:
        raise ModelError(str(error)) from None
    fields = manifest.read_checked(model_dir)
    kind = "keras" if backend == "keras" else ("tflite_int8" if precision == "int8" else "tflite")
    model_file = manifest.artifact(fields, kind)
    manifest.verify(model_dir, fields, [model_file, LABELS_FILE])  # hashes only what it reads
    labels = manifest.read_labels(model_dir, fields)
    engine = ENGINES[backend](manifest.inside(model_dir, model_file), threads)
    shape = fields["input"]
    expected = (shape["height"], shape["width"], shape["channels"])
    if tuple(engine.input_shape) != expected:
        raise ManifestError(
            f"{model_dir / model_file} takes input {tuple(engine.input_shape)} but "
            f"{model_dir / MANIFEST_FILE} field 'input' says {expected}: rebuild the model directory"
        )
    if engine.input_dtype != shape["dtype"]:
        raise ManifestError(
            f"{model_dir / model_file} takes {engine.input_dtype} pixels but {model_dir / MANIFEST_FILE} "
            f"field 'input.dtype' says {shape['dtype']}: re-export the model (`make model`, or "
            "`imgrec train` again)"
        )
    if engine.classes != len(labels):
        raise ManifestError(
            f"{model_dir / LABELS_FILE} has {len(labels)} labels but {model_dir / model_file} has "
            f"{engine.classes} outputs: the labels must match the model's outputs one to one"
        )
    if engine.detects != ("in_domain" in fields):
        raise ManifestError(
            f"{model_dir / model_file} {'answers' if engine.detects else 'has no'} in-domain distance but "
            f"{model_dir / MANIFEST_FILE} {'has no' if engine.detects else 'has a'} field 'in_domain': the "
            "detector and its threshold come together (imgrec train writes both)"
        )
    info = ModelInfo(name=fields["name"], version=fields["version"], backend=backend)
    classifier = Classifier(engine, labels, info, fields)
    classifier.warm_up(expected)
    return classifier
