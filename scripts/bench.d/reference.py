"""Reference pipeline for the agent throughput benchmark.

Runs a Custom Vision ONNX export on a video the way a Python IoT Edge module
does it. OpenCV decodes (cv2.VideoCapture), resizes and converts each frame.
ONNX Runtime runs the model, and NumPy post-processes the outputs: softmax
and argmax for classifiers, a score threshold for [S1] detectors. Each frame
gives one JSON line on stdout, and a JSON summary with the time spent in each
stage is written to --summary.

The timed region starts at the first read and ends after the last frame, as
the agent's own summary does, so session creation is not counted.
"""

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

PROVIDERS = {
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
S1_OUTPUTS = ("detected_boxes", "detected_scores", "detected_classes")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="Custom Vision export zip")
    parser.add_argument("--source", required=True, help="video file")
    parser.add_argument("--execution-provider", choices=sorted(PROVIDERS), default="openvino")
    parser.add_argument("--threads", type=int, required=True, help="intra-op threads")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--compile-cache-dir", type=Path, help="OpenVINO cache_dir")
    parser.add_argument("--summary", type=Path, required=True, help="JSON summary output")
    return parser.parse_args()


def load_export(zip_path, workdir):
    """Unpacks the export and returns the model path, its metadata and labels."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(workdir)
    workdir = Path(workdir)
    metadata = json.loads((workdir / "metadata_properties.json").read_text())
    labels_file = workdir / "labels.txt"
    labels = labels_file.read_text().split() if labels_file.exists() else []
    return workdir / "model.onnx", metadata, labels


def open_session(model_path, args):
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    provider = PROVIDERS[args.execution_provider]
    if provider == "OpenVINOExecutionProvider":
        provider_options = {"device_type": "CPU", "num_of_threads": str(args.threads)}
        if args.compile_cache_dir:
            provider_options["cache_dir"] = str(args.compile_cache_dir)
        providers = [(provider, provider_options)]
    else:
        providers = [provider]
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


class Preprocess:
    """Resize and colour conversion from the export's metadata, NCHW float32 out."""

    def __init__(self, session, metadata):
        model_input = session.get_inputs()[0]
        self.name = model_input.name
        _, _, self.height, self.width = model_input.shape
        self.rgb = metadata.get("Image.BitmapPixelFormat", "Rgb8") == "Rgb8"
        self.mean = np.array(json.loads(metadata["CustomVision.Preprocess.NormalizeMean"]), np.float32)
        self.std = np.array(json.loads(metadata["CustomVision.Preprocess.NormalizeStd"]), np.float32)
        self.unit_range = metadata.get("Image.NominalPixelRange") == "Normalized_0_1"

    def __call__(self, frame_bgr):
        resized = cv2.resize(frame_bgr, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        if self.rgb:
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        values = resized.astype(np.float32)
        if self.unit_range:
            values /= 255.0
        values = (values - self.mean) / self.std
        return {self.name: np.ascontiguousarray(values.transpose(2, 0, 1)[np.newaxis])}


def softmax(values):
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def classify(outputs, labels, threshold):
    scores = outputs[0].reshape(-1)
    already_probabilities = scores.min() >= 0.0 and abs(float(scores.sum()) - 1.0) < 1e-3
    probabilities = scores if already_probabilities else softmax(scores)
    order = np.argsort(-probabilities)
    return [
        {"label": labels[index] if index < len(labels) else str(index), "score": float(probabilities[index])}
        for index in order
        if probabilities[index] >= threshold
    ]


def detect_s1(outputs, labels, threshold):
    boxes, scores, classes = (np.asarray(output).reshape(-1, *output.shape[2:]) for output in outputs)
    keep = np.nonzero(scores >= threshold)[0]
    keep = keep[np.argsort(-scores[keep])]
    predictions = []
    for index in keep:
        x_min, y_min, x_max, y_max = np.clip(boxes[index], 0.0, 1.0).tolist()
        class_index = int(round(float(classes[index])))
        predictions.append({
            "label": labels[class_index] if class_index < len(labels) else str(class_index),
            "score": float(scores[index]),
            "box": {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max},
        })
    return predictions


def run(args):
    with tempfile.TemporaryDirectory() as workdir:
        model_path, metadata, labels = load_export(args.model, workdir)
        session = open_session(model_path, args)

    output_names = [output.name for output in session.get_outputs()]
    is_s1 = set(S1_OUTPUTS) <= set(output_names)
    if is_s1:
        output_names = list(S1_OUTPUTS)
    postprocess = detect_s1 if is_s1 else classify
    preprocess = Preprocess(session, metadata)

    capture = cv2.VideoCapture(args.source)
    if not capture.isOpened():
        sys.exit(f"reference: OpenCV cannot open {args.source}")

    stages = {"decode_s": 0.0, "preprocess_s": 0.0, "inference_s": 0.0, "postprocess_s": 0.0}
    frames = 0
    started = time.perf_counter()
    while True:
        mark = time.perf_counter()
        ok, frame = capture.read()
        stages["decode_s"] += time.perf_counter() - mark
        if not ok:
            break

        mark = time.perf_counter()
        feed = preprocess(frame)
        stages["preprocess_s"] += time.perf_counter() - mark

        mark = time.perf_counter()
        outputs = session.run(output_names, feed)
        stages["inference_s"] += time.perf_counter() - mark

        mark = time.perf_counter()
        predictions = postprocess(outputs, labels, args.threshold)
        line = {"frame": frames, "timestamp": time.time(), "source": args.source, "predictions": predictions}
        sys.stdout.write(json.dumps(line) + "\n")
        stages["postprocess_s"] += time.perf_counter() - mark
        frames += 1
    elapsed = time.perf_counter() - started
    capture.release()

    summary = {
        "frames": frames,
        "elapsed_s": elapsed,
        "fps": frames / elapsed if elapsed > 0 else 0.0,
        "provider": session.get_providers()[0],
        "threads": args.threads,
        **stages,
    }
    args.summary.write_text(json.dumps(summary) + "\n")


if __name__ == "__main__":
    run(parse_args())
