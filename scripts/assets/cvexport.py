"""Package an ONNX model the way Azure Custom Vision exports it.

An export is a zip with model.onnx, labels.txt, cvexport.manifest and
metadata_properties.json at its root. The key names and value spellings
below follow real exports published on GitHub (manifests of ONNX
classification and object detection exports, and a metadata_properties.json
with "CustomVision.Metadata.Version": "1.2") and the Azure-Samples
customvision-export-samples readers, which take Image.BitmapPixelFormat and
Image.NominalPixelRange from the ONNX model's metadata_props.
"""

import hashlib
import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

# Fixed so that the same inputs give byte-identical zips.
EXPORTED_DATE = "2024-01-01T00:00:00.0000000Z"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
IDS_NAMESPACE = uuid.UUID("6c1f5c3e-9a0e-4c1b-8d59-0b7f2f1f6a10")


@dataclass
class Export:
    """One Custom Vision export: the model, its labels and its preprocessing."""

    name: str
    domain_type: str
    model: onnx.ModelProto
    labels: list
    width: int
    height: int
    pixel_format: str
    postprocess_method: str
    yolo_biases: list = field(default_factory=list)
    nms_threshold: float = 0.0
    line_ending: str = "\n"


def metadata_properties(export: Export) -> dict:
    """Return the metadata_properties.json keys of an export, in file order."""
    return {
        "CustomVision.Metadata.AdditionalModelInfo": "",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Postprocess.Method": export.postprocess_method,
        "CustomVision.Postprocess.Yolo.Biases": json.dumps(export.yolo_biases),
        "CustomVision.Postprocess.Yolo.NmsThreshold": str(float(export.nms_threshold)),
        "CustomVision.Preprocess.CropHeight": "0",
        "CustomVision.Preprocess.CropMethod": "NoCrop",
        "CustomVision.Preprocess.CropWidth": "0",
        "CustomVision.Preprocess.MaxDimension": "0",
        "CustomVision.Preprocess.MaxScale": "0.0",
        "CustomVision.Preprocess.MinDimension": "0",
        "CustomVision.Preprocess.MinScale": "0.0",
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "CustomVision.Preprocess.ResizeMethod": "Stretch",
        "CustomVision.Preprocess.TargetHeight": str(export.height),
        "CustomVision.Preprocess.TargetWidth": str(export.width),
        "Image.BitmapPixelFormat": export.pixel_format,
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255",
    }


def manifest(export: Export, model_bytes: bytes) -> dict:
    """Return the cvexport.manifest of an export, in file order."""
    return {
        "DomainType": export.domain_type,
        "Platform": "ONNX",
        "Flavor": None,
        "ExporterVersion": "2.0",
        "ExportedDate": EXPORTED_DATE,
        "IterationId": str(uuid.uuid5(IDS_NAMESPACE, export.name)),
        "ModelFileName": "model.onnx",
        "LabelFileName": "labels.txt",
        "MetadataPropsFileName": "metadata_properties.json",
        "ModelFileSHA1": hashlib.sha1(model_bytes).hexdigest(),
        "SchemaVersion": "1.0",
    }


def serialize_model(export: Export) -> bytes:
    """Attach the metadata to the model, check it and return its bytes."""
    del export.model.metadata_props[:]
    for key, value in metadata_properties(export).items():
        export.model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(export.model, full_check=True)
    return export.model.SerializeToString(deterministic=True)


def export_files(export: Export) -> dict:
    """Return the files of the export zip, by name."""
    model_bytes = serialize_model(export)
    return {
        "cvexport.manifest": json.dumps(manifest(export, model_bytes), indent=2).encode(),
        "labels.txt": export.line_ending.join(export.labels).encode(),
        "metadata_properties.json": json.dumps(metadata_properties(export), indent=4).encode(),
        "model.onnx": model_bytes,
    }


def deterministic_zip(files: dict) -> bytes:
    """Zip files with sorted entries, fixed timestamps and fixed permissions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def write_export(export: Export, out_dir: Path) -> Path:
    """Write <name>.zip to out_dir and return its path."""
    path = out_dir / f"{export.name}.zip"
    data = deterministic_zip(export_files(export))
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path
