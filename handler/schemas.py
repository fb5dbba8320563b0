"""The answer shapes, defined once: the model returns these objects and the OpenAPI document
describes them, so the document cannot drift from the code (tests also check real answers)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Prediction(BaseModel):
    """One ranked class."""

    model_config = ConfigDict(frozen=True)

    label: str = Field(description="Keras ImageNet class name", examples=["military_uniform"])
    probability: float = Field(ge=0, le=1, description="softmax probability", examples=[0.93])
    class_id: str | None = Field(
        default=None,
        description="WordNet id of an ImageNet class; absent for your own classes",
        examples=["n03763968"],
    )

    def to_dict(self) -> dict[str, str | float]:
        answer: dict[str, str | float] = {"label": self.label, "probability": round(self.probability, 6)}
        if self.class_id:
            answer["class_id"] = self.class_id
        return answer


class ModelInfo(BaseModel):
    """What answered: reported in every prediction so results can be traced to a model build."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(examples=["mobilenet_v2"])
    version: str = Field(examples=["1.0.0"])
    backend: Literal["litert", "keras"]

    def to_dict(self) -> dict[str, str]:
        return self.model_dump()


class PredictionAnswer(BaseModel):
    predictions: list[Prediction] = Field(description="best first; top_k entries (default 5)")
    model: ModelInfo
    uncertain: bool | None = Field(
        default=None, description="present when MIN_CONFIDENCE applies: top-1 below it, refer to a person"
    )


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
    card: dict = Field(description="the model card (trained models): data, settings, validation metrics")


class ErrorAnswer(BaseModel):
    error: str = Field(
        description="what was wrong, for people", examples=['The JSON body has no "image" field.']
    )
    code: str = Field(description="what was wrong, for programs", examples=["missing_image"])


class Limits(BaseModel):
    max_image_bytes: int = Field(description="largest accepted image, encoded")
    max_image_pixels: int = Field(description="largest accepted image, width x height")
    max_images_per_request: int = Field(description="most images in one batch request")
    max_upload_bytes: int = Field(description="largest photo through POST /uploads")


class HealthAnswer(BaseModel):
    status: Literal["ok"]
    model: ModelInfo
    classes: int = Field(description="how many classes the model tells apart")
    limits: Limits
    uploads: bool = Field(description="whether POST /uploads is available")
