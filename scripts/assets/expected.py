"""Run every fixture on the photos with ONNX Runtime, check it, and collect expected results.

Images are stretched to the model input, as Custom Vision's "Stretch"
resize method and the Azure-Samples readers do, with Pillow's bilinear
filter. A Rust test that resizes differently should
compare scores with a tolerance of about 0.05 and boxes with about 0.02.
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from PIL import Image

import centerface
import grid
import yolox
from orientation import MEAN, STD, labels_of

RESIZE = "stretch to the model input with Pillow 13.0.0 bilinear"
FACE_ON_ASTRONAUT = [182 / 512, 58 / 512, 270 / 512, 178 / 512]


class CheckFailed(Exception):
    """A fixture gave a result other than the one it was built to give."""


def tensor(image: Image.Image, width: int, height: int, order: str) -> np.ndarray:
    """Return a [1,3,H,W] float32 0-255 tensor in RGB or BGR channel order."""
    pixels = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR), np.float32)
    if order == "BGR":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def open_export(path: Path) -> tuple:
    """Return an ONNX Runtime session and the labels of a Custom Vision export zip."""
    with zipfile.ZipFile(path) as archive:
        model = archive.read("model.onnx")
        labels = archive.read("labels.txt").decode().splitlines()
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]), labels


def rounded_box(box) -> list:
    return [round(float(value), 4) for value in box]


def classify(session, labels, images: dict, legacy: bool) -> dict:
    results = {}
    for name, image in images.items():
        outputs = session.run(None, {"data": tensor(image, 224, 224, "BGR")})
        if legacy:
            label = str(outputs[0][0])
            score = float(outputs[1][0][label])
        else:
            probabilities = outputs[0][0]
            label = labels[int(np.argmax(probabilities))]
            score = float(probabilities.max())
        results[name] = {"label": label, "score": round(score, 3)}
    return results


def detect(session, labels, images: dict, size: int) -> dict:
    results = {}
    for name, image in images.items():
        boxes, scores, classes = session.run(
            ["detected_boxes", "detected_scores", "detected_classes"],
            {"image_tensor": tensor(image, size, size, "RGB")},
        )
        results[name] = [
            {"label": labels[int(label)], "score": round(float(score), 3), "box": rounded_box(box)}
            for box, score, label in zip(boxes[0], scores[0], classes[0])
        ]
    return results


def check_orientation(results: dict, rotated_pages: dict) -> None:
    for name, label in rotated_pages.items():
        if results[name]["label"] != label:
            raise CheckFailed(f"orientation classifier gave {results[name]} on {name}, expected label {label}")


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


def check_faces(results: dict) -> None:
    faces = results["astronaut.png"]
    if len(faces) != 1 or iou(faces[0]["box"], FACE_ON_ASTRONAUT) < 0.7:
        raise CheckFailed(f"face detector gave {faces} on astronaut.png, expected one face near {rounded_box(FACE_ON_ASTRONAUT)}")
    for name in ("chelsea.png", "coffee.png"):
        if results[name]:
            raise CheckFailed(f"face detector found {results[name]} on {name}, which shows no face")


def check_against_reference(session_output_boxes, reference: list, size: int, context: str) -> None:
    """Compare the graph's best box with the NumPy decoding of the raw model."""
    if not reference:
        if len(session_output_boxes):
            raise CheckFailed(f"{context}: the graph found boxes the NumPy decoding did not")
        return
    best = np.array(reference[0][1]) / size
    graph_best = np.array(session_output_boxes[0])
    if np.abs(np.clip(best, 0, 1) - graph_best).max() > 1e-4:
        raise CheckFailed(f"{context}: graph box {graph_best} differs from NumPy decoding {best}")


def check_raw_decoding(raw_dir: Path, face_session, text_session, images: dict) -> None:
    """Check the in-graph decoding against NumPy decoding of the shipped models."""
    face_raw = onnxruntime.InferenceSession(
        centerface.with_input_size(onnx.load(raw_dir / "centerface.onnx"), centerface.INPUT_SIZE).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    text_raw = onnxruntime.InferenceSession(str(raw_dir / "ddddocr-common-det.onnx"), providers=["CPUExecutionProvider"])
    for name, image in images.items():
        rgb = tensor(image, centerface.INPUT_SIZE, centerface.INPUT_SIZE, "RGB")
        heatmap, scale, offset, _ = face_raw.run(None, {"input.1": rgb})
        boxes = face_session.run(["detected_boxes"], {"image_tensor": rgb})[0][0]
        check_against_reference(boxes, centerface.reference_decode(heatmap, scale, offset), centerface.INPUT_SIZE, f"face detector on {name}")

        rgb = tensor(image, yolox.INPUT_SIZE, yolox.INPUT_SIZE, "RGB")
        output = text_raw.run(None, {"images": np.ascontiguousarray(rgb[:, ::-1])})[0]
        boxes = text_session.run(["detected_boxes"], {"image_tensor": rgb})[0][0]
        check_against_reference(boxes, yolox.reference_decode(output), yolox.INPUT_SIZE, f"text detector on {name}")


def grid_results(session, labels, images: dict) -> dict:
    results = {}
    for name, image in images.items():
        output = session.run(["model_outputs0"], {"data": tensor(image, grid.INPUT_SIZE, grid.INPUT_SIZE, "BGR")})[0]
        detections = grid.reference_decode(output)
        if len(detections) != 1:
            raise CheckFailed(f"grid fixture gave {len(detections)} boxes on {name}, expected exactly one")
        label, score, box = detections[0]
        expected = [grid.expected_box(grid.BRIGHT_BOX), grid.expected_box(grid.DARK_BOX)]
        if min(np.abs(np.array(box) - np.array(candidate)).max() for candidate in expected) > 1e-5:
            raise CheckFailed(f"grid fixture box {box} on {name} is neither of the encoded boxes {expected}")
        results[name] = {"label": labels[label], "score": round(score, 3), "box": rounded_box(box)}
    return results


def plain_results(model_path: Path, images: dict) -> dict:
    labels = labels_of(onnx.load(model_path))
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    results = {}
    for name, image in images.items():
        bgr = tensor(image, 224, 224, "BGR") / 255.0
        normalised = ((bgr - MEAN.reshape(1, 3, 1, 1)) / STD.reshape(1, 3, 1, 1)).astype(np.float32)
        probabilities = session.run(None, {"x": normalised})[0][0]
        results[name] = {"label": labels[int(np.argmax(probabilities))], "score": round(float(probabilities.max()), 3)}
    return results


def collect(customvision_dir: Path, raw_dir: Path, photos: dict, frames: dict, rotated_pages: dict) -> dict:
    """Run and check every fixture, and return the content of expected.json."""
    everything = {**photos, **frames}
    expected = {"resize": RESIZE, "fixtures": {}}
    fixtures = expected["fixtures"]

    session, labels = open_export(customvision_dir / "orientation-classification.zip")
    results = classify(session, labels, everything, legacy=False)
    check_orientation(results, rotated_pages)
    fixtures["orientation-classification.zip"] = {"input": "data [1,3,224,224] BGR 0-255", "output": "model_output [1,4]", "results": results}

    session, labels = open_export(customvision_dir / "orientation-classification-legacy.zip")
    legacy = classify(session, labels, everything, legacy=True)
    if legacy != results:
        raise CheckFailed("the legacy orientation export disagrees with the newer one")
    fixtures["orientation-classification-legacy.zip"] = {"input": "data [1,3,224,224] BGR 0-255", "output": "classLabel [1] string, loss seq(map(string,float))", "results": legacy}

    face_session, labels = open_export(customvision_dir / "face-detection-s1.zip")
    results = detect(face_session, labels, everything, centerface.INPUT_SIZE)
    check_faces(results)
    fixtures["face-detection-s1.zip"] = {"input": f"image_tensor [1,3,{centerface.INPUT_SIZE},{centerface.INPUT_SIZE}] RGB 0-255", "results": results}

    text_session, labels = open_export(customvision_dir / "text-detection-s1.zip")
    results = detect(text_session, labels, everything, yolox.INPUT_SIZE)
    fixtures["text-detection-s1.zip"] = {
        "input": f"image_tensor [1,3,{yolox.INPUT_SIZE},{yolox.INPUT_SIZE}] RGB 0-255",
        "results": {name: {"count": len(boxes), "best": boxes[:3]} for name, boxes in results.items()},
    }
    check_raw_decoding(raw_dir, face_session, text_session, photos)

    session, labels = open_export(customvision_dir / "grid-detection-legacy.zip")
    fixtures["grid-detection-legacy.zip"] = {
        "input": "data [1,3,416,416] BGR 0-255",
        "output": "model_outputs0 [1,35,13,13], decoded as the Azure-Samples ONNX reader does, probability threshold 0.01",
        "results": grid_results(session, labels, everything),
    }

    fixtures["plain-classifier.onnx"] = {
        "input": "x [N,3,224,224] BGR, (pixel / 255 - mean) / std with mean [0.485,0.456,0.406] and std [0.229,0.224,0.225]",
        "output": "fetch_name_0 [N,4], labels from the 'character' metadata",
        "results": plain_results(customvision_dir / "plain-classifier.onnx", everything),
    }
    return expected


def to_json(expected: dict) -> bytes:
    return (json.dumps(expected, indent=2, sort_keys=True) + "\n").encode()
