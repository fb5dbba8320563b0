"""What one function instance is built from, once, where it starts: settings, the model, storage.

``start`` is Lambda's init phase (the model verified, loaded and warmed up); tests and dev tools
build a ``Runtime`` from their own ``Settings`` and S3 client instead of patching globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from handler.answers.answering import Answerer
from handler.answers.capture import Capture
from handler.config import Settings
from handler.recognition import memory, model
from handler.recognition.recognizer import Recognizer
from handler.recognition.sandbox import DecodeSandbox
from handler.records.pipeline import Records
from handler.records.storage import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    recognizer: Recognizer
    storage: Storage

    @cached_property
    def capture(self) -> Capture:
        """Answers sampled into S3 and the feedback on them (off unless a capture rate is set)."""
        return Capture(self.settings, self.storage.given_client)

    @cached_property
    def answerer(self) -> Answerer:
        """The one road from images to answers, what every door is given."""
        return Answerer(self.recognizer, self.capture, self.min_confidence)

    @cached_property
    def records(self) -> Records:
        """What the S3 doors are given: the answerer, the store, a record's classes and size limit."""
        top_k = self.answerer.default_top_k(self.settings.default_top_k)
        return Records(self.answerer, self.storage, top_k, self.settings.max_upload_bytes)

    @property
    def min_confidence(self) -> float | None:
        """Below this top-1 probability an answer says ``"uncertain": true`` (a person should look):
        ``MIN_CONFIDENCE``, else the model card's, else never."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        return self.recognizer.classifier.manifest.get("card", {}).get("min_confidence")

    @classmethod
    def start(
        cls, settings: Settings, s3_client: Any = None, sandbox: DecodeSandbox | None = None
    ) -> Runtime:
        """The cold start: the decode sandbox first (its processes stay small and never see the
        model's threads; ``handler.app`` launches it before its imports), then the model, verified
        and warmed up while the sandbox boots, then the sandbox's workers."""
        sandbox = sandbox or DecodeSandbox.for_settings(settings.decoding)
        memory.configure()  # freed memory returns to the OS
        classifier = model.load_classifier(
            settings.model_dir, settings.backend, settings.threads, settings.precision
        )
        return cls.with_classifier(settings, classifier, s3_client, sandbox.ready())

    @classmethod
    def with_classifier(
        cls,
        settings: Settings,
        classifier: model.Classifier,
        s3_client: Any = None,
        sandbox: DecodeSandbox | None = None,
    ) -> Runtime:
        """A runtime around an already loaded classifier and, when given, a running sandbox (tests
        build many runtimes from one model and one sandbox)."""
        recognizer = Recognizer(classifier, settings.decoding, sandbox or start_sandbox(settings))
        return cls(settings, recognizer, Storage(settings, s3_client))


def start_sandbox(settings: Settings) -> DecodeSandbox:
    """The decode workers these settings ask for, ready."""
    return DecodeSandbox.for_settings(settings.decoding).ready()
