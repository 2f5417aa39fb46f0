"""The base of every typed domain result.

Domain functions return these (``CheckIn``, ``Note``, ``Escalation``...), never the API's
JSON: the pages read them as attributes, dates still dates, and the API layer turns them
into JSON with ``to_json()`` at the edge. One convention, so ``mypy --strict`` checks the
data where it crosses a package boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    JsonValue,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)


def utc_iso(value: datetime) -> str:
    # Always UTC, so a record reads the same in the POST that wrote it as in every GET
    # (the database hands back UTC; a value from a request may carry another offset).
    return value.astimezone(UTC).isoformat()


# A moment in time: a datetime in Python, ISO 8601 in UTC ("+00:00") in JSON. pydantic's
# own form ("Z") would change every timestamp the API has answered with so far.
Instant = Annotated[datetime, PlainSerializer(utc_iso, return_type=str, when_used="json")]


# A JSON value as the caller holds it, for payloads passed on as given (an event's data,
# an audit entry's detail): unlike pydantic's ``JsonValue`` its containers are read-only,
# so a ``list[str]`` is one.
JsonData: TypeAlias = (
    str | int | float | bool | Sequence["JsonData"] | Mapping[str, "JsonData"] | None)


# A JSON object as the API and the sockets send it.
JsonObject: TypeAlias = dict[str, JsonData]


class Result(BaseModel):
    """A typed, immutable answer of a domain function."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self, *, exclude: set[str] | None = None) -> JsonObject:
        """The API's JSON for this result (the only place it is made)."""
        data: JsonObject = self.model_dump(mode="json", exclude=exclude)
        return data


class Person(Result):
    """Someone a record names (a visit's patient, who raised an escalation...): their id
    and name, and nothing else."""

    id: int
    name: str


class WithDetail(Result):
    """A result whose free-form ``detail`` (what was stored with it in a JSON column:
    an event's level and reasons, a medication change's dose, a score's items...) stands
    beside its fields in the JSON, as it always has; a key of the detail wins over a
    field of the same name, as it did in the dictionaries these results replaced."""

    detail: dict[str, JsonValue]

    @model_serializer(mode="wrap")
    def _merge_detail(self, handler: SerializerFunctionWrapHandler) -> dict[str, JsonValue]:
        data: dict[str, JsonValue] = handler(self)
        detail = data.pop("detail")
        assert isinstance(detail, dict)
        return {**data, **detail}
