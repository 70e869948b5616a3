"""Unpack ONNX Runtime with its OpenVINO execution provider from the pinned wheel.

The onnxruntime-openvino wheel carries libonnxruntime.so.1.24.1, the
OpenVINO provider library and OpenVINO 2025.4 with its CPU, GPU and NPU
plugins. Wheels cannot hold symbolic links, so the wheel stores each
versioned library name as a full copy. Here the longest name of each set
of identical files is the real file and the shorter names link to it.
"""

import ctypes
import subprocess
import zipfile
from collections import defaultdict
from pathlib import Path

from lockfile import sha256_bytes

LIBRARY_DIR_IN_WHEEL = "onnxruntime/capi/"
ORT_LIBRARY = "libonnxruntime.so.1.24.1"
ORT_VERSION = b"1.24.1"

# The GPU plugin needs libOpenCL.so.1 and the NPU plugin the Level Zero
# loader. OpenVINO loads a plugin only when its device is asked for, so a
# missing library there only hides that device.
OPTIONAL_LIBRARIES = {
    "libopenvino_intel_gpu_plugin.so": "ocl-icd-libopencl1",
    "libopenvino_intel_npu_plugin.so": "level-zero",
}


class RuntimeCheckFailed(Exception):
    """The unpacked runtime is incomplete or does not load."""


def unpack_runtime(wheel_path: Path, out_dir: Path) -> list:
    """Write every shared library of the wheel except the Python binding to out_dir.

    Returns the names written, real files and links alike.
    """
    groups = defaultdict(list)
    with zipfile.ZipFile(wheel_path) as wheel:
        for info in wheel.infolist():
            name = info.filename
            if not name.startswith(LIBRARY_DIR_IN_WHEEL) or ".so" not in name:
                continue
            base = name[len(LIBRARY_DIR_IN_WHEEL):]
            if "/" in base or base.startswith("onnxruntime_pybind11_state"):
                continue
            data = wheel.read(info)
            groups[sha256_bytes(data)].append((base, data))

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for members in groups.values():
        members.sort(key=lambda member: (len(member[0]), member[0]))
        real_name, data = members[-1]
        write_if_changed(out_dir / real_name, data, mode=0o755)
        written.append(real_name)
        for link_name, _ in members[:-1]:
            link_if_changed(out_dir / link_name, real_name)
            written.append(link_name)

    # The library's SONAME, and the unversioned name a linker looks for.
    for link_name in ("libonnxruntime.so.1", "libonnxruntime.so"):
        link_if_changed(out_dir / link_name, ORT_LIBRARY)
        written.append(link_name)
    return sorted(written)


def write_if_changed(path: Path, data: bytes, mode: int = 0o644) -> None:
    if path.is_symlink():
        path.unlink()
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    path.chmod(mode)


def link_if_changed(path: Path, target: str) -> None:
    if path.is_symlink() and str(path.readlink()) == target:
        return
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def write_env(out_dir: Path) -> Path:
    """Write the shell file that points the agent at the unpacked runtime.

    ONNX Runtime finds its provider libraries next to libonnxruntime, and
    OpenVINO finds its plugins next to libopenvino through their $ORIGIN
    RPATH, so LD_LIBRARY_PATH is not needed.
    """
    env_path = out_dir / "env"
    text = (
        "# Source this file to run the agent on the unpacked ONNX Runtime.\n"
        f'export ORT_DYLIB_PATH="{out_dir.resolve() / ORT_LIBRARY}"\n'
    )
    write_if_changed(env_path, text.encode())
    return env_path


def check_ldd(out_dir: Path) -> list:
    """Run ldd on every real library and raise if a required one is missing.

    Returns warnings for optional plugins whose system libraries are absent.
    """
    warnings = []
    for path in sorted(out_dir.glob("*.so*")):
        if path.is_symlink():
            continue
        output = subprocess.run(["ldd", str(path)], check=True, capture_output=True, text=True).stdout
        missing = [line.split()[0] for line in output.splitlines() if "not found" in line]
        if not missing:
            continue

        package = OPTIONAL_LIBRARIES.get(path.name)
        if package is None:
            raise RuntimeCheckFailed(
                f"ldd {path}: missing {', '.join(missing)}; run scripts/install-deps and try again"
            )
        warnings.append(f"{path.name} needs {', '.join(missing)} (Debian package {package}); its device stays unavailable")
    return warnings


def check_library_loads(out_dir: Path) -> str:
    """Load the unpacked libonnxruntime with ctypes and return its version string."""
    library = ctypes.CDLL(str(out_dir / ORT_LIBRARY))

    class OrtApiBase(ctypes.Structure):
        _fields_ = [("GetApi", ctypes.c_void_p), ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]

    library.OrtGetApiBase.restype = ctypes.POINTER(OrtApiBase)
    version = library.OrtGetApiBase().contents.GetVersionString()
    if version != ORT_VERSION:
        raise RuntimeCheckFailed(f"{out_dir / ORT_LIBRARY} reports version {version!r}, expected {ORT_VERSION!r}")
    return version.decode()


def check_openvino_session(model_path: Path) -> dict:
    """Run a model through the OpenVINO execution provider on its CPU device.

    Uses the onnxruntime package of the venv, which is built from the same
    wheel as the unpacked libraries.
    """
    import numpy as np
    import onnxruntime
    from onnxruntime.capi import _pybind_state

    session = onnxruntime.InferenceSession(
        str(model_path),
        providers=[("OpenVINOExecutionProvider", {"device_type": "CPU"}), "CPUExecutionProvider"],
    )
    if session.get_providers()[0] != "OpenVINOExecutionProvider":
        raise RuntimeCheckFailed(f"OpenVINOExecutionProvider was not used; session providers are {session.get_providers()}")

    model_input = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in model_input.shape]
    outputs = session.run(None, {model_input.name: np.zeros(shape, np.float32)})
    return {
        "providers": session.get_providers(),
        "openvino_devices": list(_pybind_state.get_available_openvino_device_ids()),
        "output_shape": list(outputs[0].shape),
    }
