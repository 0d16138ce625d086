"""The client of the clinical service, with the brief's edge -> cloud fallback.

``Client(urls=[edge, cloud])`` tries the URLs in order. A URL that refuses the connection, does not answer
within ``timeout`` seconds or answers 502/503/504 is left for the next one; when every URL failed, the client
waits (exponential backoff, at least a 503's ``Retry-After``) and starts again from the first, ``retries``
times. A 4xx answer is the caller's to fix and is raised at once, with the service's message.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx

from dermascan.errors import DermaScanError

log = logging.getLogger("dermascan.client")

RETRYABLE = frozenset({502, 503, 504})


class ClientError(DermaScanError, RuntimeError):
    """The service refused the request (4xx: fix the request) or no URL answered (``status`` is ``None``)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Client:
    """Calls ``/api/v1/analyze`` on the first URL that answers.

    Args:
        urls: service base URLs, preferred first (the clinic's edge box, then the cloud).
        key: the clinic's API key.
        timeout: seconds one attempt on one URL may take before the next URL is tried.
        retries: rounds over all URLs after the first one fails.
        backoff: seconds before the first retry round, doubled each round.
        max_backoff: longest wait between rounds.
    """

    def __init__(
        self,
        urls: list[str],
        key: str,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        if not urls:
            raise ValueError("give at least one service URL (urls=['http://edge:8000', 'https://cloud'])")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError(f"timeout={timeout} must be > 0, retries={retries} and backoff={backoff} >= 0")
        self.urls = [u.rstrip("/") for u in urls]
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        self.last_url: str | None = None  # the URL that gave the last answer

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to the first URL that answers; its JSON answer.

        Raises:
            ClientError: a 4xx answer, or no URL answered after every retry.
        """
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            wait = min(self.backoff * 2**attempt, self.max_backoff)
            for url in self.urls:
                try:
                    r = self._http.post(url + path, json=body)
                except httpx.TimeoutException:
                    failures.append(f"{url}: no answer within {self._http.timeout.read} s")
                    continue
                except httpx.TransportError as e:
                    failures.append(f"{url}: {type(e).__name__} ({e})")
                    continue
                if r.status_code in RETRYABLE:
                    failures.append(f"{url}: HTTP {r.status_code}")
                    retry_after = r.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        wait = min(max(wait, float(retry_after)), self.max_backoff)
                    continue
                if r.status_code >= 400:
                    error = _error_of(r)
                    raise ClientError(f"{url}: HTTP {r.status_code} {error[0]}: {error[1]}", r.status_code, error[0])
                self.last_url = url
                return r.json()
            if attempt < self.retries:
                log.warning("no service answered (%s); retrying in %.1f s", failures[-1], wait)
                time.sleep(wait)
        raise ClientError("no service URL answered: " + "; ".join(failures[-len(self.urls) * 2 :]))

    def analyze(
        self,
        image: bytes | str | os.PathLike[str],
        clinic_id: str,
        patient_id: str,
        lesion_id: str | None = None,
        body_site: str | None = None,
    ) -> dict[str, Any]:
        """Analyse one image (bytes or a file path): the service's answer (``diagnosis``, ``prediction_id``, ...)."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        body: dict[str, Any] = {
            "image": base64.b64encode(data).decode("ascii"),
            "clinic_id": clinic_id,
            "patient_id": patient_id,
        }
        body.update({k: v for k, v in (("lesion_id", lesion_id), ("body_site", body_site)) if v is not None})
        return self.post("/api/v1/analyze", body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_of(r: httpx.Response) -> tuple[str, str]:
    try:
        err = r.json()["error"]
        return str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return "http_error", r.text[:200]


__all__ = ["Client", "ClientError"]
