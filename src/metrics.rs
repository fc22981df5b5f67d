//! Run metrics: `metrics.jsonl` (one JSON object per log interval), the same scalars as
//! TensorBoard event files, the window of recent episodes, and what both training loops
//! (the agent's and the trainers') share to report a run: the [`Averager`] of a log
//! interval and the [`progress_bar`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Returns and lengths of the last 100 episodes (SB3's `ep_info_buffer`), and the
/// count and sum of every episode's return since the run began (logged as
/// `rollout/episodes` and `rollout/ep_rew_total`, so that the mean return over any
/// span of episodes between two log lines is exact: a study's final return and area
/// under the curve).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpisodeWindow {
    returns: VecDeque<f64>,
    lengths: VecDeque<usize>,
    pub total: u64,
    /// Sum of the returns of all `total` episodes (checkpoints before this field read
    /// as 0).
    #[serde(default)]
    pub return_sum: f64,
}

impl EpisodeWindow {
    pub const SIZE: usize = 100;

    pub fn push(&mut self, ret: f64, len: usize) {
        if self.returns.len() == Self::SIZE {
            self.returns.pop_front();
            self.lengths.pop_front();
        }
        self.returns.push_back(ret);
        self.lengths.push_back(len);
        self.total += 1;
        self.return_sum += ret;
    }

    pub fn is_full(&self) -> bool {
        self.returns.len() == Self::SIZE
    }

    pub fn mean_return(&self) -> Option<f64> {
        (!self.returns.is_empty())
            .then(|| self.returns.iter().sum::<f64>() / self.returns.len() as f64)
    }

    pub fn mean_length(&self) -> Option<f64> {
        (!self.lengths.is_empty())
            .then(|| self.lengths.iter().sum::<usize>() as f64 / self.lengths.len() as f64)
    }
}

/// The rows of `run/metrics.jsonl`, one JSON object per log line; an error names the
/// file (and the line that is not JSON).
pub fn read_rows(run: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    use anyhow::Context;
    let path = run.join(crate::run_dir::METRICS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))
        })
        .collect()
}

/// Writes scalars to `metrics.jsonl` and a TensorBoard event file in the run directory.
pub struct MetricsWriter {
    jsonl: BufWriter<File>,
    tb: BufWriter<File>,
    jsonl_path: std::path::PathBuf,
    tb_path: std::path::PathBuf,
}

/// An I/O error with the file it happened on.
fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot write '{}': {e}", path.display()))
}

impl MetricsWriter {
    /// Opens (appending) the writers in `dir`. `resumed_at`: the step a resumed run
    /// continues from. The new event file then starts with TensorBoard's session-start
    /// record just after that step, on which TensorBoard drops the older files' rows
    /// after it (those written after the checkpoint, as `metrics.jsonl` is cut back).
    pub fn open(dir: &Path, resumed_at: Option<u64>) -> std::io::Result<Self> {
        let jsonl_path = dir.join(crate::run_dir::METRICS);
        let jsonl = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jsonl_path)
            .map_err(|e| at(&jsonl_path, e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "events.out.tfevents.{}.rlcpc.{}",
            now.as_secs(),
            now.subsec_nanos()
        );
        let tb_path = dir.join(name);
        let mut tb = BufWriter::new(File::create(&tb_path).map_err(|e| at(&tb_path, e))?);
        write_record(
            &mut tb,
            &event(wall_time(), 0, EventBody::FileVersion("brain.Event:2")),
        )
        .map_err(|e| at(&tb_path, e))?;
        if let Some(step) = resumed_at {
            // Rows after the checkpoint's step go; the row at it stays (TensorBoard
            // keeps the rows whose step is below the session start's).
            let start = step.saturating_add(1) as i64;
            write_record(&mut tb, &event(wall_time(), start, EventBody::SessionStart))
                .and_then(|()| tb.flush())
                .map_err(|e| at(&tb_path, e))?;
        }
        Ok(MetricsWriter {
            jsonl: BufWriter::new(jsonl),
            tb,
            jsonl_path,
            tb_path,
        })
    }

    /// Logs `scalars` at environment step `step`; non-finite values are written as null.
    /// An error names the file it happened on (a full disk, say).
    pub fn log(&mut self, step: u64, scalars: &[(String, f64)]) -> std::io::Result<()> {
        let mut obj = serde_json::Map::new();
        for (k, v) in scalars {
            obj.insert(
                k.clone(),
                serde_json::Number::from_f64(*v)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
            );
        }
        writeln!(self.jsonl, "{}", serde_json::Value::Object(obj))
            .and_then(|()| self.jsonl.flush())
            .map_err(|e| at(&self.jsonl_path, e))?;
        let wt = wall_time();
        let tb = &mut self.tb;
        scalars
            .iter()
            .filter(|(_, v)| v.is_finite())
            .try_for_each(|(k, v)| {
                write_record(tb, &event(wt, step as i64, EventBody::Scalar(k, *v as f32)))
            })
            .and_then(|()| tb.flush())
            .map_err(|e| at(&self.tb_path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// TensorBoard's format: TFRecord framing around `tensorflow.Event` protocol buffers.
// Only the fields TensorBoard's scalar plugin reads are written, encoded by hand:
// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//         SessionLog session_log = 6; }
// Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
// SessionLog { SessionStatus status = 1; }  (START = 1)

enum EventBody<'a> {
    FileVersion(&'a str),
    Scalar(&'a str, f32),
    /// A session (re)started at the event's step: TensorBoard purges the rows of
    /// earlier files at that step and later.
    SessionStart,
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn len_delimited(buf: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    buf.push(key);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn event(wall_time: f64, step: i64, body: EventBody) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(0x10);
    varint(&mut e, step as u64);
    match body {
        EventBody::FileVersion(v) => len_delimited(&mut e, 0x1a, v.as_bytes()),
        EventBody::SessionStart => len_delimited(&mut e, 0x32, &[0x08, 0x01]),
        EventBody::Scalar(tag, x) => {
            let mut value = Vec::new();
            len_delimited(&mut value, 0x0a, tag.as_bytes());
            value.push(0x15);
            value.extend_from_slice(&x.to_le_bytes());
            let mut summary = Vec::new();
            len_delimited(&mut summary, 0x0a, &value);
            len_delimited(&mut e, 0x2a, &summary);
        }
    }
    e
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc(data).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads TFRecord frames back, checking both checksums of each.
    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let len_bytes = &bytes[i..i + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()),
                masked_crc(len_bytes)
            );
            let data = &bytes[i + 12..i + 12 + len];
            let crc = u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            out.push(data.to_vec());
            i += 16 + len;
        }
        out
    }

    #[test]
    fn masked_crc_follows_tfrecord() {
        // CRC32C("a") = 0xc1d04330 (RFC 3720 polynomial); TFRecord masks it as
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8. (TensorBoard 2.21 read these files.)
        assert_eq!(crc32c::crc32c(b"a"), 0xc1d0_4330);
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(
            masked_crc(b"a"),
            0xc1d0_4330u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn event_file_holds_framed_scalars_and_jsonl_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = MetricsWriter::open(dir.path(), None).unwrap();
        w.log(
            42,
            &[
                ("rollout/ep_rew_mean".into(), 12.5),
                ("train/explained_variance".into(), f64::NAN),
            ],
        )
        .unwrap();
        drop(w);
        let ev = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents")
            })
            .unwrap();
        let recs = records(&std::fs::read(ev).unwrap());
        assert_eq!(recs.len(), 2, "file version + one finite scalar");
        assert!(recs[0].windows(13).any(|w| w == b"brain.Event:2"));
        let tag = b"rollout/ep_rew_mean";
        assert!(recs[1].windows(tag.len()).any(|w| w == tag));
        assert!(recs[1].windows(4).any(|w| w == 12.5f32.to_le_bytes()));
        // step 42 as a varint after field 2's key.
        assert!(recs[1].windows(2).any(|w| w == [0x10, 42]));
        let line = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["rollout/ep_rew_mean"], 12.5);
        assert!(v["train/explained_variance"].is_null());
    }

    #[test]
    fn a_resumed_writer_starts_its_event_file_with_a_session_start_at_the_step() {
        // Review 3, N11: TensorBoard showed the steps after the checkpoint twice.
        let dir = tempfile::tempdir().unwrap();
        drop(MetricsWriter::open(dir.path(), Some(300)).unwrap());
        let ev = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("events.out.tfevents"))
            .unwrap();
        let recs = records(&std::fs::read(ev).unwrap());
        assert_eq!(recs.len(), 2, "file version + session start");
        // step 301 (varint ad 02), then session_log { status: START }.
        assert!(recs[1].windows(3).any(|w| w == [0x10, 0xad, 0x02]));
        assert!(recs[1].ends_with(&[0x32, 0x02, 0x08, 0x01]));
    }

    #[test]
    fn episode_window_keeps_the_last_hundred() {
        let mut w = EpisodeWindow::default();
        for i in 0..150 {
            w.push(i as f64, i);
        }
        assert!(w.is_full());
        assert_eq!(w.total, 150);
        assert_eq!(
            w.mean_return(),
            Some((50..150).sum::<usize>() as f64 / 100.0)
        );
    }
}

/// Means of named scalars over one log interval, in the order the names first came.
/// Non-finite values are left out of a mean (a NaN entropy in one update does not hide
/// the others); a name with no finite value reads NaN.
#[derive(Debug, Default)]
pub struct Averager {
    sums: Vec<(String, f64, u32)>,
}

impl Averager {
    pub fn add(&mut self, metrics: &[(String, f64)]) {
        for (k, v) in metrics {
            let (v, n) = if v.is_finite() { (*v, 1) } else { (0.0, 0) };
            match self.sums.iter_mut().find(|s| &s.0 == k) {
                Some(s) => {
                    s.1 += v;
                    s.2 += n;
                }
                None => self.sums.push((k.clone(), v, n)),
            }
        }
    }

    /// The means, each name prefixed by `prefix`; the interval starts anew.
    pub fn take(&mut self, prefix: &str) -> Vec<(String, f64)> {
        self.sums
            .drain(..)
            .map(|(k, s, n)| {
                let mean = if n > 0 { s / n as f64 } else { f64::NAN };
                (format!("{prefix}{k}"), mean)
            })
            .collect()
    }
}

/// The progress bar of a training loop on stderr: elapsed time, the bar, `pos` of
/// `total` `unit`, the ETA and a message; hidden unless `show` and stderr is a terminal
/// (then the loop prints its log lines instead, where it prints any).
pub fn progress_bar(total: u64, pos: u64, unit: &str, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = format!(
        "{{elapsed_precise}} [{{bar:24}}] {{human_pos}}/{{human_len}} {unit} (eta {{eta}}) {{msg}}"
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar.set_message("| waiting for the first log interval");
    // The clock and ETA move even between steps (a Lab update takes seconds).
    bar.enable_steady_tick(std::time::Duration::from_secs(1));
    bar
}

#[cfg(test)]
mod averager_tests {
    use super::Averager;

    #[test]
    fn means_skip_non_finite_values_keep_order_and_start_anew() {
        let mut a = Averager::default();
        a.add(&[("loss".into(), 1.0), ("acc".into(), f64::NAN)]);
        a.add(&[("loss".into(), 3.0), ("acc".into(), 0.5)]);
        a.add(&[("loss".into(), f64::INFINITY), ("knn".into(), f64::NAN)]);
        let m = a.take("train/");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], ("train/loss".to_string(), 2.0));
        assert_eq!(m[1], ("train/acc".to_string(), 0.5));
        assert_eq!(m[2].0, "train/knn");
        assert!(m[2].1.is_nan());
        assert!(a.take("").is_empty());
    }
}
