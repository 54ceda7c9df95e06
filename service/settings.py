"""The service's one settings object, read from the environment (prefix ``DEXGRASP_``; ``REDIS_URL``
without prefix). The same names are listed in the README and used by ``compose.yaml``."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    # a validation error would otherwise echo its input (the API keys) into start-up logs
    model_config = SettingsConfigDict(env_prefix="DEXGRASP_", extra="ignore", hide_input_in_errors=True)

    environment: Literal["development", "production"] = "development"
    host: str = "0.0.0.0"
    port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated keys; empty = no auth (refused in production)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="empty = CORS off")
    max_body_bytes: int = 64 * 1024 * 1024
    max_points: int = 2_000_000
    max_mesh_faces: int = 100_000  # rollout meshes beyond this are refused (413): simulation time grows with faces
    body_timeout_s: float = 30.0  # a request body that stalls this long between chunks gets 408
    keep_alive_s: int = 5  # a connection with no request in progress (idle, or headers unfinished) closes after this
    max_num_grasps: int = 64
    default_timeout_ms: int = 20_000
    max_timeout_ms: int = 120_000
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    max_batch: int = 8  # concurrent proposal requests optimised together
    batch_window_ms: float = 5.0  # how long the batcher waits for company once a request arrives
    max_queue: int = 64  # queued proposal requests beyond this get 503 + Retry-After
    warmup: bool = True
    # method=optimize ranks its candidates by the referee's protocol simulated on the request's cloud
    # (sim_worker.cloud_check; about 1-5 s per request on 2 cores); false: by Q1 alone, as before
    cloud_check: bool = True
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "DEXGRASP_REDIS_URL"))
    embedded_workers: int = 1  # supervised simulation worker processes when REDIS_URL is unset
    embedded_data_dir: str | None = None  # the embedded Redis's append-only file; unset: a temporary directory
    rollout_ttl_s: int = 86_400
    log_level: str = "info"

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.environment == "production" and not self.api_keys:
            raise ValueError("DEXGRASP_API_KEYS must be set when DEXGRASP_ENVIRONMENT=production")
        if any(len(k) < 8 for k in self.api_keys):
            raise ValueError("every API key in DEXGRASP_API_KEYS must be at least 8 characters")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
