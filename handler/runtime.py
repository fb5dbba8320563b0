"""What one function instance is built from, once, where it starts: settings, the model, storage.

``start`` is Lambda's init phase (the model verified, loaded and warmed up); tests and dev tools
build a ``Runtime`` from their own ``Settings`` and S3 client instead of patching globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handler.config import Settings
from handler.recognition import memory, model
from handler.recognition.recognizer import Recognizer
from handler.records.storage import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    recognizer: Recognizer
    storage: Storage

    @property
    def min_confidence(self) -> float | None:
        """Below this top-1 probability an answer says ``"uncertain": true`` (a person should look):
        ``MIN_CONFIDENCE``, else the model card's, else never."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        return self.recognizer.classifier.manifest.get("card", {}).get("min_confidence")

    @property
    def top_k_limits(self) -> tuple[int, int]:
        """(default, most) classes per answer: the settings, bounded by the model's class count."""
        classes = len(self.recognizer.classifier.labels)
        return min(self.settings.default_top_k, classes), min(self.settings.max_top_k, classes)

    @classmethod
    def start(cls, settings: Settings, s3_client: Any = None) -> Runtime:
        """Configure the process and load the model (the cold start)."""
        memory.configure()  # before any image is decoded: freed memory returns to the OS
        classifier = model.load_classifier(
            settings.model_dir, settings.backend, settings.threads, settings.precision
        )
        return cls.with_classifier(settings, classifier, s3_client)

    @classmethod
    def with_classifier(
        cls, settings: Settings, classifier: model.Classifier, s3_client: Any = None
    ) -> Runtime:
        """A runtime around an already loaded classifier (tests build many from one model)."""
        return cls(settings, Recognizer(classifier, settings), Storage(settings, s3_client))
