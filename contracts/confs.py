"""Schema of confs.json: one section per part, unknown keys refused, secrets kept out of the file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.alert_confs import AlertConfs, NotifyConfs
from contracts.lab_confs import FhirConfs, NodeImagesConfs, NodeMetricsConfs, ReviewConfs
from contracts.retention_confs import RetentionConfs
from contracts.specimens import SpecimenRule
from contracts.topics import SEGMENT_PATTERN

DEFAULT_PATH = Path("confs.json")
Segment = Field(pattern=SEGMENT_PATTERN.pattern)


class ConfsError(ValueError):
    """A confs.json that cannot be read or does not fit the schema."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MqttConfs(_Section):
    """How parts reach the broker."""

    host: str = Field("127.0.0.1", min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (the TLS listener's when tls is true)")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: str | None = Field(None, description="CA certificate that signed the broker's certificate")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")
    password_file: str | None = Field(
        None, description="git-ignored file holding this client's broker password; MQTT_PASSWORD overrides it"
    )


class IdentityConfs(_Section):
    """Where this installation sits in the topic tree."""

    location: str = Field("Hospital", pattern=SEGMENT_PATTERN.pattern, description="site; first topic segment")
    zone: str = Field("Lab1", pattern=SEGMENT_PATTERN.pattern, description="zone of this edge node")


class InputsConfs(_Section):
    """Which image sources an edge node runs."""

    watch_dir: str | None = Field("var/edge/inbox", description="folder watched for new images; null disables it")
    http: bool = Field(True, description="serve POST /Inference")
    camera: str | None = Field(None, description="OpenCV source: a device index or a video path/URL; null disables it")
    camera_interval_s: float = Field(5.0, gt=0, description="seconds between camera frames classified")


class OpenVinoConfs(_Section):
    """The OpenVINO runtime (Intel CPUs, integrated GPUs, NPUs)."""

    device: str = Field("CPU", description="CPU, GPU, NPU or AUTO (MYRIAD needs OpenVINO 2022.3 LTS)")
    cache_dir: str | None = Field(None, description="compiled-model cache; null = openvino-cache beside the model store")
    num_threads: int | None = Field(None, ge=1, description="inference threads; null = the runtime's choice")
    rewrite_pools: bool = Field(
        True, description="at f32 on the CPU, run few-channel average pools as depthwise convolutions (same result, faster)"
    )
    cpu_pinning: bool = Field(
        False, description="pin the CPU's inference threads to cores (steadier only where nothing else uses them)"
    )


OnnxProvider = Literal["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]


class OnnxRuntimeConfs(_Section):
    """The ONNX Runtime (CPU, and NVIDIA GPUs or Jetson boards through CUDA and TensorRT)."""

    providers: list[OnnxProvider] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], min_length=1,
        description="execution providers in order of preference; each must be available in the installed build",
    )
    num_threads: int | None = Field(None, ge=1, description="intra-op threads; null = the runtime's choice")
    device_id: int = Field(0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    trt_cache_dir: str | None = Field(None, description="TensorRT engine cache folder; null disables the cache")


class LiteRtConfs(_Section):
    """The LiteRT (TFLite) runtime, for ARM boards without OpenVINO."""

    num_threads: int | None = Field(None, ge=1, description="interpreter threads; null = the runtime's choice")


class EdgeNodeConfs(_Section):
    """One edge node."""

    device_id: str = Field("edge-node-1", pattern=SEGMENT_PATTERN.pattern, description="device id = broker username")
    inputs: InputsConfs = Field(default_factory=InputsConfs)
    model_store: str = Field("var/edge/models", description="folder of model slots (active, previous)")
    initial_package: str | None = Field(None, description="package installed when the store is empty")
    runtime: Literal["openvino", "onnxruntime", "litert"] = Field(
        "openvino", description="inference runtime: openvino, onnxruntime or litert (each has its section below)"
    )
    inference_precision: Literal["f32", "bf16", "f16", "auto"] = Field(
        "f32", description="precision the model runs at; auto = the device's own default"
    )
    openvino: OpenVinoConfs = Field(default_factory=OpenVinoConfs)
    onnxruntime: OnnxRuntimeConfs = Field(default_factory=OnnxRuntimeConfs)
    litert: LiteRtConfs = Field(default_factory=LiteRtConfs)
    openvino_device: str | None = Field(None, description="deprecated: use edge_node.openvino.device")
    confidence_threshold: float = Field(0.8, ge=0, le=1, description="below this a result is flagged uncertain")
    life_interval_s: float = Field(10.0, gt=0, description="seconds between Life telemetry messages")
    outbox_path: str = Field("var/edge/outbox.db", description="SQLite file of results not yet acknowledged")
    outbox_limit: int = Field(100_000, ge=10, description="most results kept; past it the oldest are dropped")
    http_host: str = Field("127.0.0.1", description="address the HTTP endpoint binds")
    http_port: int = Field(8080, ge=1, le=65535, description="port of POST /Inference")
    token_file: str | None = Field(
        None, description="git-ignored file with the node's HTTP bearer token; EDGE_TOKEN overrides it"
    )
    max_image_pixels: int = Field(25_000_000, ge=1, description="larger images are refused")
    images: NodeImagesConfs = Field(default_factory=NodeImagesConfs, description="images kept on the node for review")
    metrics: NodeMetricsConfs = Field(default_factory=NodeMetricsConfs, description="the node's Prometheus endpoint")

    @model_validator(mode="after")
    def _deprecated_device(self) -> "EdgeNodeConfs":
        if self.openvino_device is None:
            return self
        if "device" in self.openvino.model_fields_set and self.openvino.device != self.openvino_device:
            raise ValueError("openvino_device (deprecated) and openvino.device disagree: keep openvino.device only")
        self.openvino = self.openvino.model_copy(update={"device": self.openvino_device})
        return self


class DashboardConfs(_Section):
    """The dashboard web app and ingest."""

    database_url: str = Field("sqlite:///var/dashboard/dashboard.db", description="SQLAlchemy URL; DATABASE_URL overrides")
    app_id: str = Field("dashboard", pattern=SEGMENT_PATTERN.pattern, description="application id and broker username")
    http_host: str = Field("127.0.0.1", description="address the web app binds")
    http_port: int = Field(5000, ge=1, le=65535, description="web app port")
    public_url: str = Field("http://127.0.0.1:5000", description="base URL nodes use to download packages")
    max_clock_skew_s: float = Field(
        300.0, ge=0, description="ingest refuses messages stamped further than this ahead of its clock"
    )
    max_message_age_s: float = Field(
        30 * 24 * 3600.0, gt=0, description="ingest refuses messages stamped longer ago than this (an outbox backlog is younger)"
    )
    secret_key_file: str = Field("var/dashboard/secret_key", description="git-ignored; created on first start")
    package_dir: str = Field("var/dashboard/packages", description="where uploaded model packages are kept")
    offline_after_s: float = Field(60.0, gt=0, description="a node silent this long is shown stale")
    ood_alert_share: float = Field(
        0.2, gt=0, le=1, description="a node whose share of out-of-distribution results exceeds this raises an alert"
    )
    ood_alert_window: int = Field(50, ge=1, description="how many of a node's latest results that share is taken over")
    ood_alert_min_results: int = Field(10, ge=1, description="fewest recent results before the share can raise an alert")
    retention: RetentionConfs = Field(default_factory=RetentionConfs, description="how long telemetry is kept")
    alerts: AlertConfs = Field(default_factory=AlertConfs, description="alert thresholds, per site")
    notify: NotifyConfs = Field(default_factory=NotifyConfs, description="e-mail and webhook notifications of alerts")
    specimens: SpecimenRule = Field(default_factory=SpecimenRule, description="the specimen verdict rule")
    review: ReviewConfs = Field(default_factory=ReviewConfs, description="the reviewers' queue, image fetches and agreement")
    fhir: FhirConfs = Field(default_factory=FhirConfs, description="FHIR R4 export of specimen verdicts")


class SplitConfs(_Section):
    """How the dataset is split into blocks of consecutive file numbers."""

    validation_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of blocks held out for validation")
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of blocks held out for the test report")
    block_size: int = Field(20, ge=1, description="consecutive file numbers per block (a stand-in for a patient)")


class StainAugmentConfs(_Section):
    """HED stain jitter while training (Tellez et al. 2018): how often and how far."""

    p_hed: float = Field(0.5, ge=0, le=1, description="share of training images whose stain is jittered")
    hed_sigma: float = Field(0.08, ge=0, le=0.5, description="stain concentrations scale by 1 ± sigma and shift by ± sigma of their range")


class BlurAugmentConfs(_Section):
    """Gaussian blur while training: how often, and the widest sigma (a defocused or smeared field)."""

    p_blur: float = Field(0.2, ge=0, le=1, description="share of training images blurred")
    max_sigma: float = Field(1.2, ge=0.3, le=5, description="blur sigma in pixels is drawn from 0.3 up to this")


class ZoomAugmentConfs(_Section):
    """Random zoom while training: how often, and how far (another microscope's magnification or camera)."""

    p_zoom: float = Field(0.0, ge=0, le=1, description="share of training images zoomed in or out; 0 keeps the scale the data came at")
    max_factor: float = Field(1.25, ge=1, le=2, description="zoom factor is drawn log-uniformly between 1/max_factor and max_factor")


class TrainerConfs(_Section):
    """Training, evaluation and packaging."""

    data_dir: str = Field("../shared/datasets/all-aria", description="one folder per class")
    image_size: int = Field(224, ge=32, le=1024, description="side of the square RGB input the edge feeds")
    epochs: int = Field(30, ge=1, description="most epochs; early stopping or the time budget may end sooner")
    batch_size: int = Field(32, ge=1, description="images per training step")
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate of the schedule")
    seed: int = Field(42, description="seed of the split, augmentation and weight initialisation")
    model: Literal["small_cnn", "mobilenet_v2", "inception_v3"] = Field(
        "small_cnn", description="architecture: small_cnn (edge default), mobilenet_v2 or inception_v3"
    )
    grayscale: bool = Field(False, description="train on grayscale (the model converts RGB input itself)")
    mask_scale_bar: bool = Field(True, description="blank the bottom-right scale-bar label, a shortcut feature")
    split: SplitConfs = Field(default_factory=SplitConfs)
    stain_augment: StainAugmentConfs = Field(default_factory=StainAugmentConfs)
    blur_augment: BlurAugmentConfs = Field(default_factory=BlurAugmentConfs)
    zoom_augment: ZoomAugmentConfs = Field(default_factory=ZoomAugmentConfs)
    final_fit: bool = Field(
        False, description="the release trains on the train and test blocks together, for its last epoch; only the "
        "validation blocks stay out, to set the OOD threshold and be reported on; cross-validation is the estimate",
    )
    runs_dir: str = Field("runs", description="where each training run writes its config, history and model")
    package_dir: str = Field("models", description="where signed packages and their reports are written")
    signing_key: str = Field("keys/model_signing_key.pem", description="git-ignored; generated on first use")
    internal_size: int = Field(224, ge=32, le=1024, description="size the model works at inside: the input size keeps every detail, half of it quarters the cost")
    width: int = Field(16, ge=4, le=256, description="channels of the small CNN's first layer")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the classifier layer")
    residual: bool = Field(False, description="the small CNN's two-convolution blocks add their input to their output")
    squeeze_excite: bool = Field(False, description="the small CNN's two-convolution blocks reweight channels (squeeze-and-excitation)")
    mix_style: float = Field(0.0, ge=0, le=1, description="probability per batch of mixing feature statistics between images after the small CNN's first three stages (MixStyle; training only, 0 = off)")
    train_crop: int = Field(128, ge=0, description="random square crops of this size train the small CNN; 0 = whole images")
    patience: int = Field(8, ge=1, description="epochs without a better validation loss before stopping")
    max_train_minutes: float = Field(15.0, gt=0, description="training stops after this long (restoring the best epoch)")
    ood_quantile: float = Field(
        0.99, gt=0.5, lt=1, description="OOD threshold: this quantile of validation scores (1 - share of validation flagged)"
    )
    ood_threshold_margin: float = Field(
        1.0, ge=1, le=3, description="OOD threshold: the validation quantile times this (above 1 leaves room for patients the quantile did not see)"
    )
    ood_stain_quantile: float | None = Field(
        0.98, gt=0.5, le=1, description="stain gate: flag fields whose stain spread exceeds this quantile of the clean training fields; null = no gate"
    )


class OtaConfs(_Section):
    """Who may sign model packages."""

    trusted_public_keys: list[str] = Field(default_factory=list, description="ed25519:<base64> keys, a list for rotation")
    max_package_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="largest package a node or the dashboard accepts")
    ca_file: str | None = Field(
        None, description="CA certificate that signed the dashboard's HTTPS certificate, for package downloads; null = the system's CAs"
    )

    @field_validator("trusted_public_keys")
    @classmethod
    def _keys_parse(cls, keys: list[str]) -> list[str]:
        from contracts.model_package import parse_public_key

        for key in keys:
            parse_public_key(key)
        return keys


class Confs(_Section):
    """The whole confs.json."""

    mqtt: MqttConfs
    identity: IdentityConfs
    edge_node: EdgeNodeConfs
    dashboard: DashboardConfs
    trainer: TrainerConfs
    ota: OtaConfs


def describe_errors(error: ValidationError) -> str:
    """One line per problem, each naming the dotted key and the reason."""
    lines = []
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{key}: {item['msg']}")
    return "\n".join(lines)


def parse_confs(text: str | bytes, source: str = "confs.json") -> Confs:
    """Validate confs from JSON text."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfsError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfsError(f"{source}: the top level must be an object")
    try:
        return Confs.model_validate(data)
    except ValidationError as exc:
        raise ConfsError(f"{source}:\n{describe_errors(exc)}") from None


def load_confs(path: Path | str = DEFAULT_PATH) -> Confs:
    """Read and validate a confs.json file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfsError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_confs(text, str(path))


def read_secret(env_var: str, file_path: str | None) -> str | None:
    """A secret from the environment, else from a git-ignored file, else None."""
    if value := os.environ.get(env_var):
        return value
    if file_path and Path(file_path).is_file():
        return Path(file_path).read_text().strip() or None
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m contracts.confs check [PATH]`."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "check" or len(args) > 2:
        print("usage: python -m contracts.confs check [PATH]", file=sys.stderr)
        return 2
    path = Path(args[1]) if len(args) == 2 else DEFAULT_PATH
    try:
        load_confs(path)
    except ConfsError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
