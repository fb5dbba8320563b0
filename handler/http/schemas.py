"""The API's answer shapes as pydantic models, for the OpenAPI document (and tests that validate
real answers against it). The core returns plain dataclasses (``recognition.model.Prediction``,
``ModelInfo``); ``Prediction`` and ``ModelInfo`` here document those same shapes, and a test holds
their fields equal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Prediction(BaseModel):
    """One ranked class (the shape of ``recognition.model.Prediction.to_dict``)."""

    model_config = ConfigDict(frozen=True)

    label: str = Field(description="Keras ImageNet class name", examples=["military_uniform"])
    probability: float = Field(ge=0, le=1, description="softmax probability", examples=[0.93])
    class_id: str | None = Field(
        default=None,
        description="WordNet id of an ImageNet class; absent for your own classes",
        examples=["n03763968"],
    )


class ModelInfo(BaseModel):
    """What answered (the shape of ``recognition.model.ModelInfo``)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(examples=["mobilenet_v2"])
    version: str = Field(examples=["1.0.0"])
    backend: Literal["litert", "keras"]


class PredictionAnswer(BaseModel):
    predictions: list[Prediction] = Field(description="best first; top_k entries (default 5)")
    model: ModelInfo
    in_domain: bool = Field(
        description="false: the photo is unlike anything the model was trained on (its ranking is still "
        "given); always true for a model without a detector (the ImageNet export)"
    )
    uncertain: bool | None = Field(
        default=None, description="present when MIN_CONFIDENCE applies: top-1 below it, refer to a person"
    )
    prediction_id: str = Field(
        description="MODEL:VERSION:UTC-TIME:SHA256-OF-THE-IMAGE; send it back with POST /feedback",
        examples=["mobilenet_v2:1.0.0:20261127T214420123456Z:" + "9f86d081" * 8],
    )
    captured: bool | None = Field(
        default=None,
        description="present when this answer was sampled for capture (CAPTURE_RATE): whether it was stored",
    )
    top_k_clamped: bool | None = Field(
        default=None,
        description="present (true) when top_k asked for more classes than the model has: every class "
        "is answered (a batch answer carries it beside its results)",
    )


class FeedbackRequest(BaseModel):
    prediction_id: str = Field(description="the answer's prediction_id")
    label: str = Field(
        description="the right class: one of the model's classes (GET /model)", examples=["bee"]
    )


class FeedbackAnswer(BaseModel):
    prediction_id: str
    label: str = Field(description="the correction, as stored")
    answered: str | None = Field(description="what the model answered (its top-1 label)")
    time: str = Field(description="when the correction was stored (UTC, ISO 8601)")


class ModelSpec(BaseModel):
    name: str
    version: str


class ModelAnswer(BaseModel):
    model_spec: ModelSpec
    backend: Literal["litert", "keras"]
    classes: list[str] = Field(description="the labels, in output order")
    input: dict
    preprocessing: dict
    min_confidence: float | None
    card: dict = Field(description="the model card (trained models): data, settings, test metrics")


class ErrorAnswer(BaseModel):
    error: str = Field(
        description="what was wrong, for people", examples=['The JSON body has no "image" field.']
    )
    code: str = Field(description="what was wrong, for programs", examples=["missing_image"])


class LimitsAnswer(BaseModel):
    max_image_bytes: int = Field(description="largest accepted image, encoded")
    max_image_pixels: int = Field(description="largest accepted image, width x height")
    max_images_per_request: int = Field(description="most images in one batch request")
    max_upload_bytes: int = Field(description="largest photo through POST /uploads")


class HealthAnswer(BaseModel):
    status: Literal["ok"]
    model: ModelInfo
    classes: int = Field(description="how many classes the model tells apart")
    limits: LimitsAnswer
    uploads: bool = Field(description="whether POST /uploads is available")
