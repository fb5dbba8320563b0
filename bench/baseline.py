"""The seed tutorial's Flask app, re-created faithfully, measured in its own process.

What the course's app did: Keras MobileNetV2 loaded at start, one ``model.predict`` per request,
Pillow decoding the whole upload then resizing, ``preprocess_input`` and ``decode_predictions``.
Called through Flask's test client (no network), like our handler is called in-process, and, like
``bench.ours``, frozen between events by ``bench.shape``'s harness (``between_events``).

    python -m bench.baseline PORTRAIT.jpg TWELVE_MP.jpg [--quick]
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image


def create_app() -> Flask:
    from keras.applications.mobilenet_v2 import MobileNetV2, decode_predictions, preprocess_input

    app = Flask(__name__)
    model = MobileNetV2(weights="imagenet")

    @app.route("/predict", methods=["POST"])
    def predict():
        image = Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")
        image = image.resize((224, 224))
        batch = preprocess_input(np.expand_dims(np.asarray(image, dtype=np.float32), axis=0))
        predictions = model.predict(batch, verbose=0)
        top = decode_predictions(predictions, top=5)[0]
        return jsonify({"predictions": [{"label": label, "probability": float(p)} for _, label, p in top]})

    return app


def main(portrait_path: str, large_path: str, quick: bool) -> None:
    from bench.figures import peak_rss_mb, percentiles, progress
    from bench.shape import between_events

    client = create_app().test_client()

    def post(data: bytes) -> dict:
        response = client.post("/predict", data={"image": (io.BytesIO(data), "photo.jpg")})
        assert response.status_code == 200
        return response.get_json()

    def latency(data: bytes, runs: int, measurement: str) -> dict[str, float]:
        step = progress(measurement, runs)
        for _ in range(2):
            between_events()
            post(data)
        samples = []
        for _ in range(runs):
            between_events()
            started = time.perf_counter()
            post(data)
            samples.append(time.perf_counter() - started)
            step()
        return percentiles(samples)

    small, large = Path(portrait_path).read_bytes(), Path(large_path).read_bytes()
    top1 = post(small)["predictions"][0]["label"]
    runs = 10 if quick else 60
    result = {
        "backend": "baseline",
        "top1": top1,
        "warm_small": latency(small, runs, "warm, 600×512 JPEG"),
        "warm_12mp": latency(large, max(5, runs // 4), "warm, 12 MP JPEG"),
        "peak_rss_mb": peak_rss_mb(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--quick" in sys.argv)
