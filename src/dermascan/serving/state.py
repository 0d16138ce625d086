"""What the app holds while it runs, built once by the lifespan: the engine, the store, the patient hasher."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dermascan.serving.engine import InferenceEngine
from dermascan.serving.images import Limits
from dermascan.serving.key_cache import KeyCache
from dermascan.serving.metrics import ServiceMetrics
from dermascan.serving.rollout import Rollout
from dermascan.serving.settings import ServeSettings
from dermascan.store.identity import PatientHasher
from dermascan.store.images import ImageKeeper

log = logging.getLogger("dermascan.serving")


@dataclass
class ServiceState:
    """The running service.

    Attributes:
        settings: the resolved settings.
        metrics: the app's Prometheus metrics.
        hasher: keyed patient hash.
        engine: the inference seam (``None`` until the lifespan loaded the model).
        db: the database engine; ``sessions`` makes its sessions.
        bundle_digest: sha256 of the bundle's manifest (stored with every prediction).
        heatmap: whether answers carry an attention map.
        keeper: image keeping, when switched on.
        challenger_digest: sha256 of the challenger's manifest ("" without one).
        rollout: the shadow and canary shares (``None`` without a challenger).
        key_cache: API keys the store accepted in the last ``key_cache_s`` seconds.
    """

    settings: ServeSettings
    metrics: ServiceMetrics
    hasher: PatientHasher
    engine: InferenceEngine | None = None
    db: Engine | None = None
    sessions: sessionmaker[Session] | None = None
    bundle_digest: str = ""
    heatmap: bool = False
    keeper: ImageKeeper | None = None
    challenger_digest: str = ""
    rollout: Rollout | None = None
    key_cache: KeyCache = field(init=False)

    def __post_init__(self) -> None:
        self.key_cache = KeyCache(self.settings.key_cache_s)

    @property
    def limits(self) -> Limits:
        return Limits(max_pixels=self.settings.max_pixels, min_side=self.settings.min_side)

    def start(self) -> None:
        """Open the store (migrating it if allowed), load the Predictor once and warm it up."""
        from dermascan.inference import Predictor
        from dermascan.inference.bundle import bundle_digest
        from dermascan.store import db

        s = self.settings
        self.db = db.make_engine(s.database_url())
        if s.auto_migrate:
            db.upgrade(self.db)
        db.check_schema(self.db)
        self.sessions = db.session_factory(self.db)
        if s.keep_images:
            self.keeper = ImageKeeper(s.keep_images)
        self.bundle_digest = _pinned(bundle_digest(s.bundle), s.bundle_sha256, s.bundle)
        predictor = Predictor.from_path(s.bundle, runtime=s.runtime, threads=s.threads)
        self.heatmap = s.heatmap and predictor.heatmap_kind is not None
        challenger = None
        if s.challenger is not None:
            self.challenger_digest = _pinned(bundle_digest(s.challenger), s.challenger_sha256, s.challenger)
            challenger = Predictor.from_path(s.challenger, runtime=s.runtime, threads=s.threads)
            if self.heatmap and challenger.heatmap_kind is None:
                from dermascan.serving.settings import SettingsError

                raise SettingsError(
                    f"--challenger {s.challenger}: the bundle has no heat-map output, so its canary answers could "
                    "not carry the attention map; export it with its heat map, or serve with heatmap: false"
                )
            self.rollout = Rollout(s.shadow_share, s.canary_share, self.sessions, s.share_refresh_s)
            self.rollout.refresh()
            log.info(
                "challenger %s: shadow %.3f, canary %.3f",
                challenger.model_version,
                s.shadow_share,
                self.rollout.canary_share,
            )
        self.engine = InferenceEngine(predictor, self.metrics, s, challenger)
        self.engine.warm_up(self.heatmap)
        info = predictor.describe()
        self.metrics.model.info(
            {
                "name": str(info["name"]),
                "version": str(info["version"]),
                "runtime": str(predictor.runtime),
                "bundle_digest": self.bundle_digest[:16],
            }
        )
        log.info("serving %s %s on %s", info["name"], info["version"], predictor.runtime)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.db is not None:
            self.db.dispose()


def _pinned(actual: str, expected: str | None, bundle: object) -> str:
    """The bundle's digest, refused when a registry pinned another one (a swapped or edited bundle)."""
    if expected is not None and actual != expected.lower():
        from dermascan.serving.settings import SettingsError

        raise SettingsError(
            f"bundle {bundle}: manifest sha256 {actual[:16]}... is not the registered {expected[:16]}...; "
            "fetch the registered version again (dermascan serve --model models:/NAME@ALIAS)"
        )
    return actual


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

__all__ = ["ServiceState", "State", "get_state"]
