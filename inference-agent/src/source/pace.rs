//! The frame-rate cap (`--max-fps`).
//!
//! Video frames are selected by their presentation timestamps. At most
//! `max_fps` frames per second of the video's timeline are inferred and the
//! rest are skipped. So a file is processed as fast as the device allows,
//! and a live stream at most `max_fps` times per second. Still images have
//! no timeline, so the pacer waits between them instead.

use std::time::{Duration, Instant};

/// Decides which frames to infer.
#[derive(Debug, Clone)]
pub struct FramePacer {
    interval: Option<Duration>,
    next_timestamp: Option<Duration>,
    next_instant: Option<Instant>,
}

impl FramePacer {
    /// Creates a pacer for at most `max_fps` frames per second. `None`, zero
    /// or a negative rate means no cap.
    pub fn new(max_fps: Option<f64>) -> Self {
        let interval = max_fps
            .filter(|fps| fps.is_finite() && *fps > 0.0)
            .map(|fps| Duration::from_secs_f64(1.0 / fps));
        Self {
            interval,
            next_timestamp: None,
            next_instant: None,
        }
    }

    /// Returns whether the frame at `timestamp` is due. The first frame and
    /// every frame after a gap of more than one interval are due at once.
    pub fn admit_timestamp(&mut self, timestamp: Duration) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };

        match self.next_timestamp {
            Some(next) if timestamp < next => false,
            Some(next) if timestamp < next + interval => {
                self.next_timestamp = Some(next + interval);
                true
            }
            _ => {
                self.next_timestamp = Some(timestamp + interval);
                true
            }
        }
    }

    /// Sleeps until the next still image is due.
    pub fn wait_for_slot(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };

        let now = Instant::now();
        if let Some(next) = self.next_instant
            && next > now
        {
            std::thread::sleep(next - now);
        }

        let start = Instant::now();
        self.next_instant = Some(match self.next_instant {
            Some(next) if start < next + interval => next + interval,
            _ => start + interval,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(pacer: &mut FramePacer, fps: u32, frames: u32) -> Vec<u32> {
        (0..frames)
            .filter(|frame| pacer.admit_timestamp(Duration::from_secs(1) * *frame / fps))
            .collect()
    }

    #[test]
    fn no_cap_admits_everything() {
        let mut pacer = FramePacer::new(None);

        assert_eq!(admitted(&mut pacer, 10, 5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn caps_ten_fps_video_to_three() {
        let mut pacer = FramePacer::new(Some(3.0));

        // Due at 0, 1/3, 2/3, 1, 4/3 s: frames 0, 4 (0.4 s), 7, 10, 14.
        assert_eq!(admitted(&mut pacer, 10, 15), vec![0, 4, 7, 10, 14]);
    }

    #[test]
    fn gap_restarts_schedule() {
        let mut pacer = FramePacer::new(Some(2.0));

        assert!(pacer.admit_timestamp(Duration::from_millis(0)));
        assert!(pacer.admit_timestamp(Duration::from_millis(5000)));
        assert!(!pacer.admit_timestamp(Duration::from_millis(5100)));
        assert!(pacer.admit_timestamp(Duration::from_millis(5500)));
    }

    #[test]
    fn invalid_rate_means_no_cap() {
        let mut pacer = FramePacer::new(Some(0.0));

        assert_eq!(admitted(&mut pacer, 10, 3), vec![0, 1, 2]);
    }
}
