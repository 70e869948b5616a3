//! `/snapshot.jpg`: the latest inferred frame with its predictions drawn,
//! boxes for detections and a label line per prediction.
//!
//! The frame loop only stores the frame and its predictions. Drawing and
//! JPEG encoding happen on the blocking pool when a client requests the image.

use std::path::Path;

use ab_glyph::{FontArc, PxScale};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageError, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

use crate::decode::Prediction;

/// DejaVu Sans from Debian's `fonts-dejavu-core`, which the agent image installs.
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// JPEG quality from 1 to 100: small enough for a browser refreshing a
/// snapshot of a 1080p frame, sharp enough to read labels.
const JPEG_QUALITY: u8 = 85;

/// Box and label colours, picked per label so one class keeps its colour.
const PALETTE: [Rgb<u8>; 6] = [
    Rgb([230, 25, 75]),
    Rgb([60, 180, 75]),
    Rgb([255, 225, 25]),
    Rgb([0, 130, 200]),
    Rgb([245, 130, 48]),
    Rgb([145, 30, 180]),
];

const TEXT_COLOUR: Rgb<u8> = Rgb([0, 0, 0]);

/// An inferred frame and the predictions reported for it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub image: RgbImage,
    pub predictions: Vec<Prediction>,
}

/// Loads the label font, or returns `None` after one warning, so snapshots
/// show boxes without text.
pub fn load_font(path: &Path) -> Option<FontArc> {
    let loaded = std::fs::read(path)
        .map_err(|error| error.to_string())
        .and_then(|bytes| FontArc::try_from_vec(bytes).map_err(|error| error.to_string()));
    match loaded {
        Ok(font) => Some(font),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "Font unavailable, so /snapshot.jpg shows boxes without labels; install fonts-dejavu-core"
            );
            None
        }
    }
}

/// Draws the predictions on a copy of the frame and encodes it as JPEG.
pub fn render_jpeg(snapshot: &Snapshot, font: Option<&FontArc>) -> Result<Vec<u8>, ImageError> {
    let mut image = snapshot.image.clone();
    let scale = label_scale(&image);
    let mut next_text_row = 0;

    for prediction in &snapshot.predictions {
        let colour = colour_for(&prediction.label);
        let text = format!("{} {:.2}", prediction.label, prediction.score);

        match prediction.bbox.and_then(|bbox| pixel_rect(&image, bbox)) {
            Some(rect) => {
                draw_box(&mut image, rect, colour);
                if let Some(font) = font {
                    let text_top = rect.top() - label_height(scale, font, &text) as i32;
                    draw_label(
                        &mut image,
                        font,
                        scale,
                        rect.left(),
                        text_top.max(0),
                        &text,
                        colour,
                    );
                }
            }
            None => {
                // Classifications have no box: list them from the top left.
                if let Some(font) = font {
                    draw_label(&mut image, font, scale, 0, next_text_row, &text, colour);
                    next_text_row += label_height(scale, font, &text) as i32;
                }
            }
        }
    }

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode_image(&image)?;
    Ok(jpeg)
}

/// Label text height: 1/30 of the frame height, at least 12 pixels.
fn label_scale(image: &RgbImage) -> PxScale {
    PxScale::from((image.height() as f32 / 30.0).max(12.0))
}

fn label_height(scale: PxScale, font: &FontArc, text: &str) -> u32 {
    text_size(scale, font, text).1 + 4
}

fn colour_for(label: &str) -> Rgb<u8> {
    let hash = label.bytes().fold(0usize, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(usize::from(byte))
    });
    PALETTE[hash % PALETTE.len()]
}

/// Converts a box in `[0, 1]` coordinates to pixels; `None` when it has no area.
fn pixel_rect(image: &RgbImage, bbox: crate::decode::BoundingBox) -> Option<Rect> {
    let bbox = bbox.clipped();
    let width = image.width() as f32;
    let height = image.height() as f32;

    let left = (bbox.x_min * width).round() as i32;
    let top = (bbox.y_min * height).round() as i32;
    let right = (bbox.x_max * width).round() as i32;
    let bottom = (bbox.y_max * height).round() as i32;
    if right <= left || bottom <= top {
        return None;
    }
    Some(Rect::at(left, top).of_size((right - left) as u32, (bottom - top) as u32))
}

/// Draws a box two pixels wide, the inner line inside the box.
fn draw_box(image: &mut RgbImage, rect: Rect, colour: Rgb<u8>) {
    draw_hollow_rect_mut(image, rect, colour);
    if rect.width() > 2 && rect.height() > 2 {
        let inner =
            Rect::at(rect.left() + 1, rect.top() + 1).of_size(rect.width() - 2, rect.height() - 2);
        draw_hollow_rect_mut(image, inner, colour);
    }
}

fn draw_label(
    image: &mut RgbImage,
    font: &FontArc,
    scale: PxScale,
    x: i32,
    y: i32,
    text: &str,
    colour: Rgb<u8>,
) {
    let (width, height) = text_size(scale, font, text);
    draw_filled_rect_mut(image, Rect::at(x, y).of_size(width + 4, height + 4), colour);
    draw_text_mut(image, TEXT_COLOUR, x + 2, y + 2, scale, font, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BoundingBox;

    fn face() -> Prediction {
        Prediction {
            label: "face".to_owned(),
            score: 0.9,
            bbox: Some(BoundingBox {
                x_min: 0.25,
                y_min: 0.25,
                x_max: 0.75,
                y_max: 0.75,
            }),
        }
    }

    #[test]
    fn box_drawn_without_font() {
        let snapshot = Snapshot {
            image: RgbImage::new(64, 48),
            predictions: vec![face()],
        };

        let jpeg = render_jpeg(&snapshot, None).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();

        assert_eq!(decoded.dimensions(), (64, 48));
        // The box's top edge runs along row 12, from column 16 to 48.
        let edge = decoded.get_pixel(32, 12);
        assert!(edge.0.iter().any(|&channel| channel > 100), "{edge:?}");
        let inside = decoded.get_pixel(32, 24);
        assert!(inside.0.iter().all(|&channel| channel < 40), "{inside:?}");
    }

    #[test]
    fn label_drawn_with_font() {
        let Some(font) = load_font(Path::new(DEFAULT_FONT_PATH)) else {
            eprintln!(
                "\n!!!!!!!! SKIPPED: {DEFAULT_FONT_PATH} is missing; install fonts-dejavu-core !!!!!!!!\n"
            );
            return;
        };
        let snapshot = Snapshot {
            image: RgbImage::new(64, 48),
            predictions: vec![face()],
        };

        let with_font = image::load_from_memory(&render_jpeg(&snapshot, Some(&font)).unwrap())
            .unwrap()
            .to_rgb8();
        let without_font = image::load_from_memory(&render_jpeg(&snapshot, None).unwrap())
            .unwrap()
            .to_rgb8();

        // The label's background starts above the box's top-left corner.
        let label = with_font.get_pixel(17, 1);
        assert!(label.0.iter().any(|&channel| channel > 100), "{label:?}");
        let no_label = without_font.get_pixel(17, 1);
        assert!(
            no_label.0.iter().all(|&channel| channel < 40),
            "{no_label:?}"
        );
    }

    #[test]
    fn degenerate_box_skipped() {
        let image = RgbImage::new(10, 10);
        let flat = BoundingBox {
            x_min: 0.5,
            y_min: 0.2,
            x_max: 0.5,
            y_max: 0.8,
        };

        assert!(pixel_rect(&image, flat).is_none());
    }

    #[test]
    fn missing_font_returns_none() {
        assert!(load_font(Path::new("/nonexistent/font.ttf")).is_none());
    }
}
