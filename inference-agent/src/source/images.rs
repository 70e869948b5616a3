//! Still images: one file, or every image in a folder in file-name order.

use std::path::{Path, PathBuf};

use super::{Frame, FrameSource, SourceError};

/// File extensions read as images, compared without case.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// Returns whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

/// Image files read one after another.
#[derive(Debug)]
pub struct ImageFiles {
    spec: String,
    files: Vec<PathBuf>,
    next: usize,
}

impl ImageFiles {
    pub fn single(spec: &str, path: &Path) -> Self {
        Self {
            spec: spec.to_owned(),
            files: vec![path.to_path_buf()],
            next: 0,
        }
    }

    /// Lists the folder's image files (not its subfolders), sorted by name.
    pub fn folder(spec: &str, dir: &Path) -> Result<Self, SourceError> {
        let read_error = |source| SourceError::ReadFolder {
            path: dir.to_path_buf(),
            source,
        };

        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            if path.is_file() && is_image_file(&path) {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(SourceError::EmptyFolder(dir.to_path_buf()));
        }

        files.sort();
        Ok(Self {
            spec: spec.to_owned(),
            files,
            next: 0,
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for ImageFiles {
    /// Decodes the next image. A file that fails to decode is an error,
    /// so a corrupt image is reported, not silently skipped.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let index = self.next as u64;
        self.next += 1;

        let image = image::open(path)
            .map_err(|source| SourceError::DecodeImage {
                path: path.clone(),
                source,
            })?
            .to_rgb8();
        Ok(Some(Frame {
            index,
            image,
            origin: path.display().to_string(),
            timestamp: None,
        }))
    }

    fn has_timeline(&self) -> bool {
        false
    }

    fn describe(&self) -> &str {
        &self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_match_without_case() {
        assert!(is_image_file(Path::new("a/B.PNG")));
        assert!(is_image_file(Path::new("photo.jpeg")));
        assert!(!is_image_file(Path::new("clip.mp4")));
        assert!(!is_image_file(Path::new("README")));
    }

    #[test]
    fn folder_lists_images_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.jpg", "notes.txt", "c.webp"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.png")).unwrap();

        let files = ImageFiles::folder("dir", dir.path()).unwrap();

        let names: Vec<_> = files
            .files()
            .iter()
            .map(|path| path.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.jpg", "b.png", "c.webp"]);
    }

    #[test]
    fn empty_folder_rejected() {
        let dir = tempfile::tempdir().unwrap();

        let error = ImageFiles::folder("dir", dir.path()).unwrap_err();

        assert!(matches!(error, SourceError::EmptyFolder(_)), "{error}");
    }

    #[test]
    fn decodes_frames_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("red.png");
        image::RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 0]))
            .save(&path)
            .unwrap();
        let mut source = ImageFiles::single("red.png", &path);

        let frame = source.next_frame().unwrap().unwrap();

        assert_eq!(frame.index, 0);
        assert_eq!(frame.image.dimensions(), (3, 2));
        assert!(source.next_frame().unwrap().is_none());
    }

    #[test]
    fn corrupt_image_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.png");
        std::fs::write(&path, b"not a png").unwrap();
        let mut source = ImageFiles::single("broken.png", &path);

        let error = source.next_frame().unwrap_err();

        assert!(matches!(error, SourceError::DecodeImage { .. }), "{error}");
    }
}
