"""A small client for a running webui's HTTP API (started with --api), standard library and Pillow only."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

TITLE = "Self-Attention Guidance"


@dataclass
class Answer:
    """One API answer: the HTTP status and the decoded JSON body."""

    status: int
    body: Any

    @property
    def images(self) -> list[np.ndarray]:
        return [decode_image(data) for data in self.body["images"]]

    @property
    def info(self) -> dict:
        return json.loads(self.body["info"])

    @property
    def infotexts(self) -> list[str]:
        return self.info["infotexts"]


def decode_image(data: str) -> np.ndarray:
    """A base64 PNG from the API as an (H, W, 3) uint8 array."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def encode_image(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class WebuiClient:
    """Calls one webui; identical generation requests are answered once per session (CPU time is dear)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._answers: dict[str, Answer] = {}

    def get(self, path: str) -> Answer:
        return self._call(urllib.request.Request(self.url + path))

    def post(self, path: str, payload: dict, cached: bool = True) -> Answer:
        key = path + json.dumps(payload, sort_keys=True)
        if key not in self._answers or not cached:
            request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode("utf-8"),
                                             headers={"Content-Type": "application/json"}, method="POST")
            self._answers[key] = self._call(request)
        return self._answers[key]

    def _call(self, request: urllib.request.Request) -> Answer:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return Answer(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return Answer(error.code, json.loads(body))
            except ValueError:
                return Answer(error.code, body.decode("utf-8", "replace"))

    def txt2img(self, payload: dict) -> Answer:
        return self.post("/sdapi/v1/txt2img", payload)

    def img2img(self, payload: dict) -> Answer:
        return self.post("/sdapi/v1/img2img", payload)


def with_sag(payload: dict, args: list | None) -> dict:
    """`payload` with SAG's script args set (None: no SAG entry at all, as a client unaware of SAG sends)."""
    payload = dict(payload)
    if args is not None:
        payload["alwayson_scripts"] = {**payload.get("alwayson_scripts", {}), TITLE: {"args": args}}
    return payload
