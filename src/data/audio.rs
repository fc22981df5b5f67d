//! Audio corpora: a directory searched recursively for WAV (8/16/24/32-bit integer or
//! float, any rate, mono or mixed down) and FLAC files, resampled to the trainer's rate
//! (16 kHz), with labels read from the layout: FSDD names, LibriSpeech folders, a CSV
//! manifest, or the first folder under the root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rubato::{Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType};
use serde::{Deserialize, Serialize};

/// Where the labels of a corpus come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `manifest.csv` in the root if present, else FSDD or LibriSpeech if every file name
    /// fits, else `dirs`.
    Auto,
    /// Free Spoken Digit Dataset: `DIGIT_SPEAKER_INDEX.wav` → labels `digit`, `speaker`.
    Fsdd,
    /// LibriSpeech: `SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac` → `speaker`, `chapter`.
    Librispeech,
    /// `manifest.csv` in the root: a header `path,LABEL1,LABEL2,...`, then one row per
    /// file (path relative to the root); only listed files are read.
    Csv,
    /// The first folder under the root is the `speaker` (e.g. asterisk's `en_US_f_Allison/`).
    Dirs,
}

impl Layout {
    /// The name as typed on the command line (`fsdd`, `librispeech`, ...).
    pub fn name(&self) -> String {
        crate::config::user_name(self)
    }
}

/// One recording: mono samples at the corpus rate and its labels.
#[derive(Debug, Clone)]
pub struct Utterance {
    /// Path relative to the corpus root.
    pub path: PathBuf,
    pub wave: Vec<f32>,
    pub labels: BTreeMap<String, String>,
    /// Phone segments `(start s, end s, phone)` from a TIMIT-style `.phn` file beside
    /// the audio ("START END PHONE" per line, in samples of the file's rate), if any.
    pub phones: Option<Vec<(f64, f64, String)>>,
}

/// Reads a TIMIT-style `.phn` alignment (sample positions at `rate`) into seconds.
pub fn read_phn(path: &Path, rate: u32) -> Result<Vec<(f64, f64, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bad = || {
                format!(
                    "{} line {}: expected 'START END PHONE', found '{l}'",
                    path.display(),
                    i + 1
                )
            };
            if f.len() != 3 {
                return Err(bad());
            }
            let s: u64 = f[0].parse().map_err(|_| bad())?;
            let e: u64 = f[1].parse().map_err(|_| bad())?;
            if e < s {
                return Err(bad());
            }
            Ok((
                s as f64 / rate as f64,
                e as f64 / rate as f64,
                f[2].to_string(),
            ))
        })
        .collect()
}

/// A corpus loaded into memory.
#[derive(Debug)]
pub struct AudioSet {
    pub root: PathBuf,
    pub layout: Layout,
    pub sample_rate: u32,
    pub utterances: Vec<Utterance>,
    /// Files that could not be read, with the reason (reported, skipped).
    pub skipped: Vec<(PathBuf, String)>,
}

/// How to read a corpus.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub layout: Layout,
    /// Stop at the first unreadable file instead of skipping it.
    pub strict: bool,
    pub sample_rate: u32,
    /// Read at most this many files (0: all), taken in sorted order.
    pub max_files: usize,
}

pub const MANIFEST: &str = "manifest.csv";

impl AudioSet {
    /// Reads every audio file under `root` (see [`Layout`]).
    pub fn load(root: &Path, opts: &LoadOptions) -> Result<AudioSet> {
        if !root.is_dir() {
            bail!(
                "data directory '{}' does not exist or is not a directory",
                root.display()
            );
        }
        let manifest = root.join(MANIFEST);
        let layout = match opts.layout {
            Layout::Auto if manifest.is_file() => Layout::Csv,
            other => other,
        };
        // (path, labels or None to derive them from the name)
        let mut files: Vec<(PathBuf, Option<BTreeMap<String, String>>)> = if layout == Layout::Csv {
            read_manifest(&manifest)?
                .into_iter()
                .map(|(p, l)| (p, Some(l)))
                .collect()
        } else {
            super::walk_files(root, is_audio)
                .with_context(|| format!("cannot list '{}'", root.display()))?
                .into_iter()
                .map(|p| (p, None))
                .collect()
        };
        if files.is_empty() {
            bail!(
                "no audio files (.wav, .flac) under '{}'{}",
                root.display(),
                if layout == Layout::Csv {
                    " in its manifest.csv"
                } else {
                    ""
                }
            );
        }
        if opts.max_files > 0 {
            files.truncate(opts.max_files);
        }
        let layout = match layout {
            Layout::Auto => {
                if files.iter().all(|(p, _)| fsdd_labels(p).is_some()) {
                    Layout::Fsdd
                } else if files.iter().all(|(p, _)| librispeech_labels(p).is_some()) {
                    Layout::Librispeech
                } else {
                    Layout::Dirs
                }
            }
            l => l,
        };
        for (p, labels) in files.iter_mut() {
            if labels.is_some() {
                continue;
            }
            *labels = Some(match layout {
                Layout::Fsdd => fsdd_labels(p).with_context(|| {
                    format!(
                        "'{}' is not named DIGIT_SPEAKER_INDEX.wav (FSDD layout)",
                        p.display()
                    )
                })?,
                Layout::Librispeech => librispeech_labels(p).with_context(|| {
                    format!(
                        "'{}' is not SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT (LibriSpeech layout)",
                        p.display()
                    )
                })?,
                _ => dirs_labels(p),
            });
        }
        // Decode on every core: files are independent.
        type Decoded = Result<(Vec<f32>, Option<Vec<(f64, f64, String)>>), String>;
        let decoded: Vec<(PathBuf, BTreeMap<String, String>, Decoded)> =
            crate::par::par_map(&files, |(p, l)| {
                let full = root.join(p);
                let wave = decode(&full).and_then(|(x, rate)| {
                    if x.is_empty() {
                        return Err("no samples".to_string());
                    }
                    let phn = full.with_extension("phn");
                    let phones = if phn.is_file() {
                        Some(read_phn(&phn, rate)?)
                    } else {
                        None
                    };
                    Ok((resample(&x, rate, opts.sample_rate), phones))
                });
                Ok((p.clone(), l.clone().unwrap_or_default(), wave))
            })?;
        let mut set = AudioSet {
            root: root.to_path_buf(),
            layout,
            sample_rate: opts.sample_rate,
            utterances: Vec::with_capacity(decoded.len()),
            skipped: Vec::new(),
        };
        for (path, labels, wave) in decoded {
            match wave {
                Ok((wave, phones)) => set.utterances.push(Utterance {
                    path,
                    wave,
                    labels,
                    phones,
                }),
                Err(e) if opts.strict => {
                    bail!(
                        "cannot read '{}': {e} (--strict stops at unreadable files)",
                        root.join(&path).display()
                    )
                }
                Err(e) => set.skipped.push((path, e)),
            }
        }
        if set.utterances.is_empty() {
            bail!(
                "none of the {} audio files under '{}' could be read (first: '{}': {})",
                set.skipped.len(),
                root.display(),
                set.skipped[0].0.display(),
                set.skipped[0].1
            );
        }
        Ok(set)
    }

    /// Each utterance's value of label `name`, or an error listing the labels there are.
    pub fn label(&self, name: &str) -> Result<Vec<&str>> {
        self.utterances
            .iter()
            .map(|u| {
                u.labels.get(name).map(String::as_str).with_context(|| {
                    format!(
                        "'{}' has no label '{name}' (layout {}; its labels: {})",
                        u.path.display(),
                        self.layout.name(),
                        if u.labels.is_empty() {
                            "none".to_string()
                        } else {
                            u.labels.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    )
                })
            })
            .collect()
    }

    /// The speaker of each utterance, or "" where the layout names none.
    pub fn speakers(&self) -> Vec<&str> {
        self.utterances
            .iter()
            .map(|u| u.labels.get("speaker").map_or("", String::as_str))
            .collect()
    }

    /// Total duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.utterances.iter().map(|u| u.wave.len()).sum::<usize>() as f64 / self.sample_rate as f64
    }

    /// Prints skipped files to stderr (at most `max` of them).
    pub fn report_skipped(&self, max: usize) {
        for (p, e) in self.skipped.iter().take(max) {
            crate::errln!("warning: skipped '{}': {e}", self.root.join(p).display());
        }
        if self.skipped.len() > max {
            crate::errln!(
                "warning: ... and {} more unreadable files",
                self.skipped.len() - max
            );
        }
    }
}

fn is_audio(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("wav" | "flac")
    )
}

fn stem(p: &Path) -> Option<&str> {
    p.file_stem()?.to_str()
}

fn fsdd_labels(p: &Path) -> Option<BTreeMap<String, String>> {
    let parts: Vec<&str> = stem(p)?.split('_').collect();
    match parts[..] {
        [d, s, i] if d.len() == 1 && d.parse::<u8>().is_ok() && i.parse::<u32>().is_ok() => {
            Some(BTreeMap::from([
                ("digit".to_string(), d.to_string()),
                ("speaker".to_string(), s.to_string()),
            ]))
        }
        _ => None,
    }
}

fn librispeech_labels(p: &Path) -> Option<BTreeMap<String, String>> {
    let parts: Vec<&str> = stem(p)?.split('-').collect();
    let dirs: Vec<&str> = p.parent()?.iter().filter_map(|c| c.to_str()).collect();
    match (&parts[..], &dirs[..]) {
        ([s, c, u], [.., ds, dc])
            if s == ds && c == dc && [s, c, u].iter().all(|x| x.parse::<u64>().is_ok()) =>
        {
            Some(BTreeMap::from([
                ("speaker".to_string(), s.to_string()),
                ("chapter".to_string(), format!("{s}-{c}")),
            ]))
        }
        _ => None,
    }
}

fn dirs_labels(p: &Path) -> BTreeMap<String, String> {
    let mut comps = p.iter();
    match (comps.next(), comps.next()) {
        (Some(first), Some(_)) => {
            BTreeMap::from([("speaker".to_string(), first.to_string_lossy().into_owned())])
        }
        _ => BTreeMap::new(),
    }
}

/// `manifest.csv`: header `path,NAME...`, one row per file (RFC 4180: quoted fields may
/// hold commas and quotes; blank lines are skipped).
fn read_manifest(path: &Path) -> Result<Vec<(PathBuf, BTreeMap<String, String>)>> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read manifest '{}'", path.display()))?;
    let names: Vec<String> = r
        .headers()
        .with_context(|| format!("manifest '{}': cannot read its header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    if names.first().map(String::as_str) != Some("path") || names.len() < 2 {
        bail!(
            "manifest '{}': the header must be 'path,LABEL[,LABEL...]', found '{}'",
            path.display(),
            names.join(",")
        );
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("manifest '{}' line {line}: {e}", path.display())
        })?;
        let labels = names[1..]
            .iter()
            .zip(rec.iter().skip(1))
            .map(|(n, v)| (n.clone(), v.to_string()))
            .collect();
        rows.push((PathBuf::from(&rec[0]), labels));
    }
    if rows.is_empty() {
        bail!("manifest '{}' lists no files", path.display());
    }
    Ok(rows)
}

/// Sample rates a file may declare: anything else is a broken header (rate 0 would
/// divide by zero in the resampler, rate 1 would blow 8000 samples up 16,000-fold).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Decodes a WAV or FLAC file to mono f32 in [-1, 1] (channels averaged) and its rate;
/// refuses a header rate outside [`SAMPLE_RATES`] and NaN or infinite samples.
pub fn decode(path: &Path) -> Result<(Vec<f32>, u32), String> {
    let (x, rate) = decode_raw(path)?;
    if !SAMPLE_RATES.contains(&rate) {
        return Err(format!(
            "sample rate {rate} Hz in the header, outside {} to {} Hz",
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        ));
    }
    let bad = x.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(format!("{bad} of {} samples are NaN or infinite", x.len()));
    }
    Ok((x, rate))
}

/// Whether a header's samples can be read: refuses 0 or more than 32 bits and 0
/// channels; `false` for a rate outside [`SAMPLE_RATES`], which `decode` refuses
/// without reading what the broken header sizes.
fn header_fits(bits: u32, channels: u32, rate: u32) -> Result<bool, String> {
    if !(1..=32).contains(&bits) || channels == 0 {
        return Err(format!("{bits} bits per sample, {channels} channels"));
    }
    Ok(SAMPLE_RATES.contains(&rate))
}

fn decode_raw(path: &Path) -> Result<(Vec<f32>, u32), String> {
    // A FIFO or device named .wav would block or never end: regular files only.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err("not a regular file (a device, FIFO or socket)".into()),
        Err(e) => return Err(e.to_string()),
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() == Some("flac") {
        let mut r = claxon::FlacReader::open(path).map_err(|e| e.to_string())?;
        let info = r.streaminfo();
        if !header_fits(info.bits_per_sample, info.channels, info.sample_rate)? {
            return Ok((Vec::new(), info.sample_rate));
        }
        let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
        let samples = r
            .samples()
            .map(|s| s.map(|v| v as f32 * scale))
            .collect::<Result<Vec<f32>, _>>()
            .map_err(|e| e.to_string())?;
        Ok((mixdown(samples, info.channels as usize), info.sample_rate))
    } else {
        let mut r = hound::WavReader::open(path).map_err(|e| e.to_string())?;
        let spec = r.spec();
        if !header_fits(
            spec.bits_per_sample as u32,
            spec.channels as u32,
            spec.sample_rate,
        )? {
            return Ok((Vec::new(), spec.sample_rate));
        }
        let samples = match spec.sample_format {
            hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<Vec<_>, _>>(),
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                r.samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<Vec<_>, _>>()
            }
        }
        .map_err(|e| e.to_string())?;
        Ok((mixdown(samples, spec.channels as usize), spec.sample_rate))
    }
}

fn mixdown(interleaved: Vec<f32>, channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved;
    }
    interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Band-limited resampling of a whole signal (rubato's windowed-sinc resampler, its
/// delay removed), `round(len · to / from)` samples out.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let want = (x.len() as f64 * ratio).round() as usize;
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 128,
        window: rubato::WindowFunction::BlackmanHarris2,
    };
    const CHUNK: usize = 1024;
    let mut r =
        SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1).expect("valid resampler parameters");
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + CHUNK);
    for chunk in x.chunks(CHUNK) {
        let y = if chunk.len() == CHUNK {
            r.process(&[chunk], None)
        } else {
            r.process_partial(Some(&[chunk]), None)
        }
        .expect("resampler input sized by chunk");
        out.extend_from_slice(&y[0]);
    }
    while out.len() < want + delay {
        let y = r.process_partial::<&[f32]>(None, None).expect("flush");
        out.extend_from_slice(&y[0]);
    }
    // rubato 0.16 reports an `output_delay` but already starts its output aligned with
    // the input, to within one output sample (tests/pretrain.rs measures it on tones);
    // one sample is 1/160 of the encoder's 10 ms step.
    let _ = delay;
    out.truncate(want);
    out
}
