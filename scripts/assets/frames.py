"""Lay out the photos as same-sized frames for the image-folder source and the video.

Each frame is FRAME_WIDTH x FRAME_HEIGHT RGB with the photo scaled to fit
and centred on black. The page is shown turned clockwise by 0, 90, 180 and
270 degrees, which the orientation classifier labels 0, 90, 180 and 270.
"""

import io
from pathlib import Path

from PIL import Image

FRAME_WIDTH = 640
FRAME_HEIGHT = 480

# (frame name, photo, clockwise turn in degrees)
SEQUENCE = [
    ("frame-00-page-0.png", "page.png", 0),
    ("frame-01-page-90.png", "page.png", 90),
    ("frame-02-page-180.png", "page.png", 180),
    ("frame-03-page-270.png", "page.png", 270),
    ("frame-04-astronaut.png", "astronaut.png", 0),
    ("frame-05-chelsea.png", "chelsea.png", 0),
    ("frame-06-coffee.png", "coffee.png", 0),
    ("frame-07-camera.png", "camera.png", 0),
]


def frame(photo: Image.Image, clockwise: int) -> Image.Image:
    turned = photo.convert("RGB").rotate(-clockwise, expand=True)
    scale = min(FRAME_WIDTH / turned.width, FRAME_HEIGHT / turned.height)
    size = (round(turned.width * scale), round(turned.height * scale))
    canvas = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT))
    canvas.paste(turned.resize(size, Image.BILINEAR), ((FRAME_WIDTH - size[0]) // 2, (FRAME_HEIGHT - size[1]) // 2))
    return canvas


def write_frames(photos_dir: Path, frames_dir: Path) -> dict:
    """Write the frames as PNG files and return them by file name."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    frames = {}
    for name, photo, clockwise in SEQUENCE:
        image = frame(Image.open(photos_dir / photo), clockwise)
        encoded = io.BytesIO()
        image.save(encoded, format="PNG")
        path = frames_dir / name
        if not path.exists() or path.read_bytes() != encoded.getvalue():
            path.write_bytes(encoded.getvalue())
        frames[name] = image
    return frames


def rotated_page_labels() -> dict:
    """Return the orientation label expected for each page frame."""
    return {name: str(clockwise) for name, photo, clockwise in SEQUENCE if photo == "page.png"}
