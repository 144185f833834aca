"""The JSON bodies of the service as pydantic models: requests (validated, strict: a string
where a number belongs is a 422, unknown fields too) and responses (for the OpenAPI page).

Raw ids are JSON strings or integers, as in the data (``"196"`` and ``196`` name the same
MovieLens user). Limits on list lengths are checked by the service, which answers 413.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

__all__ = [
    "HistoryRequest",
    "BatchEntry",
    "BatchRequest",
    "PredictRequest",
    "RecommendationsResponse",
    "BatchResponse",
    "SimilarResponse",
    "PredictResponse",
    "ModelInfo",
    "ModelList",
    "ItemSearchResponse",
    "Health",
    "Ready",
    "ErrorResponse",
]

IdStr = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
RawId = IdStr | StrictInt  # a raw user or item id
K = Annotated[StrictInt, Field(ge=1, description="How many items (at most the max_k limit).")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryRequest(_Strict):
    """A new user's history as raw item ids; for sequential models the order is the
    history's order, oldest first."""

    items: list[RawId] = Field(min_length=1, examples=[["1", "50", "172"]])
    k: K = 10
    include_seen: StrictBool = False


class BatchEntry(_Strict):
    """One request of a batch: a known user (``user``) or a new history (``items``)."""

    user: RawId | None = None
    items: list[RawId] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> BatchEntry:
        if (self.user is None) == (self.items is None):
            raise ValueError('give exactly one of "user" or "items"')
        return self


class BatchRequest(_Strict):
    """Many users or histories, answered in one response, scored as one batch."""

    requests: list[BatchEntry] = Field(
        min_length=1, examples=[[{"user": "196"}, {"items": ["1", "50"]}]]
    )
    k: K = 10
    include_seen: StrictBool = False


class PredictRequest(_Strict):
    user: RawId
    item: RawId


class Recommendation(BaseModel):
    rank: int
    item: str | int
    score: float | None  # None only where a model scored an item +-infinity
    title: str | None = Field(default=None, description="Present when the run knows titles.")


class RecommendationsResponse(BaseModel):
    model: str
    user: str | int | None = Field(description="The known user, or null for a history.")
    items: list[str | int] | None = Field(
        description="The history folded in (known ids, in order), or null for a user."
    )
    recommendations: list[Recommendation]
    unknown_items: list[str] = Field(description="Posted ids the model does not know: skipped.")
    notes: list[str]


class BatchResponse(BaseModel):
    model: str
    results: list[RecommendationsResponse]


class SimilarResponse(BaseModel):
    model: str
    item: str | int
    title: str | None = None
    similar: list[Recommendation]


class PredictResponse(BaseModel):
    model: str
    user: str | int
    item: str | int
    rating: float
    notes: list[str]


class Sizes(BaseModel):
    users: int
    items: int
    train_interactions: int


class ModelCapabilities(BaseModel):
    fold_in: bool
    sequential: bool
    similar_items: bool
    predict: bool
    titles: bool


class ModelInfo(BaseModel):
    name: str = Field(description="The name the model is served under (its run folder's).")
    model: str = Field(description="The model class, e.g. ease.")
    dataset: str | None
    protocol: dict[str, Any] | None
    test_metrics: dict[str, float]
    sizes: Sizes
    genrec_version: str | None
    trained: str | None = Field(description="When training finished (ISO 8601).")
    capabilities: ModelCapabilities
    example_users: list[str | int]


class ModelList(BaseModel):
    models: list[ModelInfo]


class ItemHit(BaseModel):
    item: str | int
    title: str | None = None


class ItemSearchResponse(BaseModel):
    model: str
    query: str
    items: list[ItemHit]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    models: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
