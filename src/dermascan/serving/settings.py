"""The service's settings: one pydantic-settings class, from flags, a YAML file and ``DERMASCAN_*`` variables.

Precedence, highest first: command-line flags, environment (``DERMASCAN_PORT=9000``), the ``--config`` YAML
file, the defaults below. One uvicorn worker per process is the default and the documented way to scale
(run more processes behind a proxy): the Prometheus counters of ``/metrics`` are per process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dermascan.errors import DermaScanError

#: Recommendation text per risk band; ``uncalibrated`` is used when the bundle has no operating point.
DEFAULT_RECOMMENDATIONS: dict[str, str] = {
    "low": "Low risk. Routine follow-up.",
    "moderate": "Moderate risk. Dermatologist review within 4 weeks; consider short-term digital follow-up.",
    "high": "High risk. Urgent referral to a dermatologist; excision or biopsy to be considered.",
    "uncalibrated": "Model not calibrated: no validated risk estimate. Clinical judgement only.",
}


class SettingsError(DermaScanError, ValueError):
    """Settings that cannot work (a missing file, a bad value), with the fix."""


class ServeSettings(BaseSettings):
    """Everything ``dermascan serve`` can be told. Each field is also ``DERMASCAN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DERMASCAN_", extra="forbid", validate_default=True)

    bundle: Path = Field(description="Model bundle folder (manifest.json) served by the Predictor.")
    db: str | None = Field(None, description="Database URL; default SQLite in data_dir (WAL).")
    data_dir: Path = Field(Path("dermascan-data"), description="Folder of the default SQLite database.")
    auto_migrate: bool = Field(True, description="Run the store's migrations at start (else refuse an old schema).")
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    dev: bool = Field(False, description="Development mode: a throwaway patient key if none is set.")
    patient_key: SecretStr | None = Field(None, description="HMAC key of patient ids (DERMASCAN_PATIENT_KEY).")
    patient_key_file: Path | None = Field(None, description="File holding the HMAC key of patient ids.")
    runtime: str = Field("auto", description="Predictor runtime: auto, onnxruntime, openvino, torch, ...")
    threads: int | None = Field(None, ge=1, description="Intra-op threads of the runtime (None: its default).")
    heatmap: bool = Field(True, description="Return the attention map (base64 PNG overlay) with each answer.")
    attention_map_max_side: int = Field(512, ge=0, description="Longest side of the returned overlay (0: as sent).")
    attention_map_format: Literal["jpeg", "png"] = Field(
        "jpeg",
        description="Encoding of the returned overlay: jpeg (quality 90; ~7x fewer bytes, ~8x faster) or png.",
    )
    heatmap_alpha: float = Field(0.45, ge=0, le=1, description="Opacity of the heat-map colour layer.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body, bytes.")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest decoded image, width x height.")
    min_side: int = Field(32, ge=1, description="Smallest accepted image side, pixels.")
    max_batch: int = Field(16, ge=1, description="Most images in one /analyze/batch call.")
    inference_threads: int = Field(1, ge=1, description="Threads that run the model (the inference executor).")
    batch_max_size: int = Field(8, ge=1, description="Micro-batcher: most images in one inference call (1: off).")
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description=(
            "Micro-batcher: longest a batch waits for more requests after its first, ms (0: it takes what queued "
            "while the previous batch ran, which adds nothing at low load)"
        ),
    )
    queue_size: int = Field(64, ge=1, description="Requests that may wait for the model; one more answers 503.")
    request_timeout_s: float = Field(30.0, gt=0, description="A request unanswered this long answers 504.")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After of a 503 (queue full, shutting down), s.")
    bundle_sha256: str | None = Field(
        None, description="Expected sha256 of the bundle's manifest (from the registry): refuse any other bundle."
    )
    challenger: Path | None = Field(None, description="Candidate bundle for shadow and canary traffic.")
    challenger_sha256: str | None = Field(None, description="Expected sha256 of the challenger's manifest.")
    shadow_share: float = Field(
        0.0, ge=0, le=1, description="Share of champion answers also run on the challenger (stored, never shown)."
    )
    canary_share: float = Field(
        0.0, ge=0, le=1, description="Share of requests answered by the challenger (the store's setting wins)."
    )
    share_refresh_s: float = Field(10.0, gt=0, description="How often the canary share is re-read from the store, s.")
    keep_images: str | None = Field(None, description="Keep images for review in this folder or fsspec URL.")
    recommendations: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_RECOMMENDATIONS),
        description="Recommendation text per risk band (low, moderate, high, uncalibrated).",
    )
    monitor_dir: Path | None = Field(
        None,
        description="Folder of the latest `dermascan monitor` report: its figures become /metrics gauges and "
        "its page is shown to operator keys at /ops/monitor.",
    )
    log_level: str = Field("info", description="uvicorn log level.")
    https: bool = Field(False, description="Served over TLS (e.g. behind a proxy): page cookies are marked Secure.")
    session_hours: float = Field(12, gt=0, le=24 * 7, description="Lifetime of a clinician page sign-in, hours.")
    key_cache_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="How long a checked API key is trusted without asking the store again, s (0: every request "
        "asks; a revoked key stops working at most this long after `dermascan clinic revoke`).",
    )

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        missing = sorted(set(DEFAULT_RECOMMENDATIONS) - set(self.recommendations))
        if missing:
            raise ValueError(
                f"recommendations lacks the band(s) {missing}; give a text for each of "
                f"{sorted(DEFAULT_RECOMMENDATIONS)}"
            )
        return self

    @model_validator(mode="after")
    def _check_challenger(self) -> ServeSettings:
        if (self.shadow_share or self.canary_share) and self.challenger is None:
            raise ValueError("shadow_share / canary_share need a challenger bundle: pass --challenger BUNDLE")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init) beat the environment, which beats the YAML file (merged in by `load`, as init defaults).
        return init_settings, env_settings

    @classmethod
    def load(cls, config: str | Path | None = None, **flags: Any) -> ServeSettings:
        """Settings from a YAML file, the environment and flags (``None`` flags are left out).

        Raises:
            SettingsError: a missing or malformed file, or an invalid value.
        """
        import os

        from pydantic import ValidationError

        from dermascan.config import read_yaml_mapping

        values = read_yaml_mapping(config, "--config", SettingsError) if config is not None else {}
        # The environment beats the file: drop file values that a DERMASCAN_* variable sets.
        env = {k[len("DERMASCAN_") :].lower() for k in os.environ if k.startswith("DERMASCAN_")}
        values = {k: v for k, v in values.items() if k not in env}
        values.update({k: v for k, v in flags.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as e:
            raise SettingsError(
                "invalid settings: "
                + "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors())
            ) from e

    def database_url(self) -> str:
        from dermascan.store.db import default_url

        return self.db or default_url(self.data_dir)


__all__ = ["DEFAULT_RECOMMENDATIONS", "ServeSettings", "SettingsError"]
