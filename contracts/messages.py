"""Payload models with a common envelope, and strict conversion to and from bytes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeAlias, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.topics import Channel

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})
MAX_PAYLOAD_BYTES = 64 * 1024

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SemVer = Annotated[str, Field(pattern=r"^\d{1,6}\.\d{1,6}\.\d{1,6}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
ShortText = Annotated[str, Field(max_length=1000)]


class MessageError(ValueError):
    """A payload that is not a valid message of the contract."""


def utc_now() -> datetime:
    """Current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every payload carries."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = Field(
        default=SCHEMA_VERSION, alias="schema", description="payload schema version; required on the wire"
    )
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="unique per message; consumers dedupe on it")
    device: Identifier = Field(description="sender: a device id, or the dashboard's application id")
    sent_at: AwareDatetime = Field(default_factory=utc_now, description="when the sender made it, UTC")

    @field_validator("sent_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class NodeState(StrEnum):
    """Whether a node (or the dashboard) is connected."""

    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    NO_MODEL = "NO_MODEL"


RuntimeName = Literal["openvino", "onnxruntime", "litert"]
PrecisionName = Literal["f32", "f16", "bf16"]


class ServingInfo(BaseModel):
    """Where and how a node runs its model: reported in Status and Life, shown on the fleet pages."""

    runtime: RuntimeName | None = Field(default=None, description="inference runtime serving the model")
    inference_device: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="the runtime's device (CPU, GPU, NPU, CUDAExecutionProvider, ...)"
    )
    precision: PrecisionName | None = Field(default=None, description="precision the model actually runs at")


class StatusMessage(Envelope, ServingInfo):
    """Retained presence message; the last will carries OFFLINE; NO_MODEL means connected but not serving."""

    type: Literal["status"] = "status"
    state: NodeState
    model_version: SemVer | None = None
    reason: ShortText | None = Field(default=None, description="why a NO_MODEL node cannot serve")
    software_version: Annotated[str, Field(max_length=32)]
    session_started: AwareDatetime | None = Field(
        default=None,
        description="when the connection this status belongs to was opened; a birth and its will share it",
    )

    @field_validator("session_started")
    @classmethod
    def _session_to_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def order_key(self) -> tuple[datetime, int]:
        """Sort key of presence: a later connection wins; within one connection OFFLINE follows ONLINE.

        A last will is made before its connection's ONLINE, so `sent_at` alone would rank it older.
        """
        return (self.session_started or self.sent_at, 1 if self.state is NodeState.OFFLINE else 0)


class LifeMessage(Envelope, ServingInfo):
    """Periodic health telemetry."""

    type: Literal["life"] = "life"
    cpu_percent: Percent
    memory_percent: Percent
    disk_percent: Percent
    temperature_c: Annotated[float, Field(ge=-50.0, le=200.0)] | None = None
    uptime_s: NonNegative
    inference_count: Annotated[int, Field(ge=0)]
    inference_ms_mean: NonNegative | None = None
    outbox_depth: Annotated[int, Field(ge=0)]
    model_version: SemVer | None = None


class SensorsMessage(Envelope):
    """One classification. `sample_id` is opaque: never a patient identifier."""

    type: Literal["classification"] = "classification"
    sample_id: Identifier
    image_sha256: Sha256Hex
    label: Identifier
    confidence: Probability
    probabilities: Annotated[dict[Identifier, Probability], Field(min_length=1, max_length=64)]
    model_version: SemVer
    inference_ms: NonNegative
    uncertain: bool
    out_of_distribution: bool = Field(
        default=False, description="the input is unlike the training data: needs review, not a diagnosis"
    )
    ood_score: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = Field(
        default=None, description="the model's out-of-distribution score (higher = further from training)"
    )
    specimen_id: Identifier | None = Field(
        default=None, description="opaque id of the specimen (one smear) this field of view belongs to; never a patient id"
    )

    @model_validator(mode="after")
    def _label_is_a_class(self) -> "SensorsMessage":
        if self.label not in self.probabilities:
            raise ValueError(f"label {self.label!r} is not among the probabilities' classes")
        total = sum(self.probabilities.values())
        # A softmax run at FP16 sums to 1 only roughly; more than this is not a distribution.
        if abs(total - 1.0) > max(0.01, 1e-3 * len(self.probabilities)):
            raise ValueError(f"probabilities sum to {total:.6g}, not 1")
        if abs(self.confidence - self.probabilities[self.label]) > 1e-4:
            raise ValueError(f"confidence {self.confidence} is not the label's probability {self.probabilities[self.label]}")
        if self.probabilities[self.label] < max(self.probabilities.values()) - 1e-6:
            raise ValueError(f"label {self.label!r} is not the most probable class")
        return self


class WarningCode(StrEnum):
    """Node-side problems worth an admin's attention."""

    DISK_LOW = "DISK_LOW"
    TOO_HOT = "TOO_HOT"
    SELF_TEST_FAILED = "SELF_TEST_FAILED"
    LOW_CONFIDENCE_STREAK = "LOW_CONFIDENCE_STREAK"
    OUTBOX_OVERFLOW = "OUTBOX_OVERFLOW"
    INPUT_REJECTED = "INPUT_REJECTED"
    MODEL_ERROR = "MODEL_ERROR"
    NO_MODEL = "NO_MODEL"


class Severity(StrEnum):
    """How urgent a warning is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class WarningMessage(Envelope):
    """A node-side problem."""

    type: Literal["warning"] = "warning"
    code: WarningCode
    severity: Severity = Severity.WARNING
    message: ShortText
    details: dict[Identifier, float | int | str | bool | None] = Field(default_factory=dict, max_length=32)


class ModelUpdate(BaseModel):
    """Install a model package version from a URL."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["model_update"] = "model_update"
    version: SemVer
    url: Annotated[str, Field(pattern=r"^https?://[^\s]{1,2000}$")]
    sha256: Sha256Hex
    size: Annotated[int, Field(gt=0, le=2**31)]


class Rollback(BaseModel):
    """Switch back to the previous model slot."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["rollback"] = "rollback"
    version: SemVer | None = Field(default=None, description="expected version after rollback, if known")


class Ping(BaseModel):
    """Ask the node to answer with a fresh Status and Life."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["ping"] = "ping"


class Replay(BaseModel):
    """Publish again the results the broker acknowledged in the last `seconds` (the dashboard may have missed them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["replay"] = "replay"
    seconds: Annotated[int, Field(gt=0, le=86_400)]


Command: TypeAlias = Annotated[Union[ModelUpdate, Rollback, Ping, Replay], Field(discriminator="kind")]


class CommandMessage(Envelope):
    """A dashboard command addressed to one node."""

    type: Literal["command"] = "command"
    command_id: Identifier
    command: Command


class UpdateState(StrEnum):
    """OTA progress states, in order, plus the two terminal failures."""

    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    INSTALLING = "INSTALLING"
    SELF_TEST = "SELF_TEST"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"


TERMINAL_UPDATE_STATES = frozenset({UpdateState.ACTIVE, UpdateState.FAILED, UpdateState.ROLLED_BACK})


class UpdateMessage(Envelope):
    """OTA progress for one command."""

    type: Literal["update"] = "update"
    command_id: Identifier
    state: UpdateState
    version: SemVer | None = None
    reason: ShortText | None = None
    progress: Probability | None = None


Message: TypeAlias = Annotated[
    Union[StatusMessage, LifeMessage, SensorsMessage, WarningMessage, CommandMessage, UpdateMessage],
    Field(discriminator="type"),
]
_MESSAGE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)

CHANNEL_TYPES: dict[Channel, type[Envelope]] = {
    Channel.STATUS: StatusMessage,
    Channel.LIFE: LifeMessage,
    Channel.SENSORS: SensorsMessage,
    Channel.WARNINGS: WarningMessage,
    Channel.COMMANDS: CommandMessage,
    Channel.UPDATES: UpdateMessage,
}


def to_bytes(message: Envelope) -> bytes:
    """Serialise a message to compact UTF-8 JSON."""
    return message.model_dump_json(by_alias=True, exclude_none=False).encode()


def _describe(error: ValidationError) -> str:
    """One line naming each failing field and why."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def from_bytes(data: bytes | bytearray | str, channel: Channel | None = None) -> Envelope:
    """Parse and strictly validate a payload; with a channel, require that channel's type."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MessageError(f"payload of {len(data)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    try:
        if channel is not None:
            message: Envelope = CHANNEL_TYPES[Channel(channel)].model_validate_json(data)
        else:
            message = _MESSAGE_ADAPTER.validate_json(data)
    except ValidationError:
        raise MessageError(_explain_rejection(data, channel)) from None
    if "schema_version" not in message.model_fields_set:
        raise MessageError("unsupported schema version None: the payload must carry `schema`")
    return message


def _explain_rejection(data: bytes | bytearray | str, channel: Channel | None) -> str:
    """Why a payload failed validation, naming the first thing a sender should fix (the slow path)."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"payload is not valid UTF-8 JSON: {exc}"
    if not isinstance(raw, dict):
        return f"payload must be a JSON object, not {type(raw).__name__}"
    schema = raw.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema not in SUPPORTED_SCHEMAS:
        return f"unsupported schema version {schema!r} (supported: {sorted(SUPPORTED_SCHEMAS)})"
    if channel is not None:
        wanted = CHANNEL_TYPES[Channel(channel)].model_fields["type"].default
        if raw.get("type") != wanted:
            return f"a {Channel(channel).value} payload must have type {wanted!r}, not {raw.get('type')!r}"
    try:
        _MESSAGE_ADAPTER.validate_json(data)
    except ValidationError as exc:
        return f"invalid {raw.get('type', 'untyped')} payload: {_describe(exc)}"
    return "payload is valid but not for this channel"
