//! Linear probes of frozen encoders (`rlcpc probe`), beside the trainers that make them.
//!
//! [`run`] reads the encoder file once ([`EncoderFile`]) and dispatches on what it
//! encodes: [`audio`] (a label of each utterance or frame), [`image`] (the class),
//! [`text`] (a label by k-fold cross-validation) or [`states`] (an environment's true
//! state from a recording: belief probing). Each scores the encoder next to a
//! random-init twin of the same architecture and a raw-input baseline, on the same
//! split, and returns a [`Report`]. The linear models themselves are in `linear`
//! (re-exported here). No modality module imports a sibling.

mod linear;

pub mod audio;
pub mod encode;
pub mod finetune;
pub mod image;
pub mod report;
pub mod states;
pub mod text;

use std::path::PathBuf;

use anyhow::{bail, Result};

pub use linear::*;
pub use report::{FeatureSource, ProbeRow, Report};

use crate::data::trajectories;
use crate::encoder_file::{self, EncoderFile, Modality, Origin};

/// Everything `rlcpc probe` can be asked.
pub struct Request {
    /// An encoder file, an agent checkpoint, or a run directory.
    pub encoder: PathBuf,
    /// An audio directory, a recording, an image set or a labelled text file.
    pub data: PathBuf,
    /// Audio: the label (default speaker); recordings: `state` or one variable.
    pub target: Option<String>,
    pub split: Option<crate::data::SplitBy>,
    pub test_fraction: Option<f64>,
    pub split_seed: Option<u64>,
    pub features: Option<FeatureSource>,
    pub layout: crate::data::audio::Layout,
    pub baselines: bool,
    pub strict: bool,
    pub iters: usize,
    pub max_frames: usize,
    pub max_images: usize,
    pub pool_grid: usize,
    /// Images: the share of training labels the probes see (stratified; `None`: all).
    pub labels: Option<f64>,
    /// Images: the seed of that draw (and of the images --max-images keeps).
    pub label_seed: u64,
    /// Whole-image encoders: probe on a split other than the encoder's own even where
    /// its test part holds images the encoder trained on.
    pub allow_overlap: bool,
    /// Whole-image encoders: fine-tuning steps (0: none), beside training from scratch.
    pub fine_tune: usize,
    /// Whole-image encoders: f's features and fine-tuning on host slices (`auto`,
    /// `lean`) or through candle's autograd.
    pub learner: crate::config::LearnerPath,
    /// Audio: test on a validation part of the training files, not the test files.
    pub validation: bool,
    pub folds: usize,
    pub max_texts: usize,
    pub bow_words: usize,
    pub encoding: crate::data::text::TextEncoding,
}

/// Probes `req.encoder` on `req.data`, by the kind of encoder the file holds.
pub fn run(req: &Request) -> Result<Report> {
    if req.max_texts == 0 || req.max_images == 0 || req.max_frames == 0 || req.iters == 0 {
        bail!("--max-texts, --max-images, --max-frames and --iters must be at least 1");
    }
    let path = encoder_file::encoder_path(&req.encoder);
    // What the file is decides what data it can be probed on.
    let file = EncoderFile::read(&path)?;
    let data = &req.data;
    let recording = data.join(trajectories::FILE).exists();
    if file.origin == Origin::AgentCheckpoint && !recording {
        bail!(
            "'{}' is an agent checkpoint: it can be probed only on a recording written by `rlcpc record` ('{}' holds no {})",
            path.display(),
            data.display(),
            trajectories::FILE
        );
    }
    if req.fine_tune > 0 && file.modality() != Modality::Image {
        bail!(
            "--fine-tune is for whole-image encoders (SimCLR, MoCo); '{}' is {}",
            path.display(),
            file.spec.describe()
        );
    }
    if req.validation && file.modality() != Modality::Audio {
        bail!(
            "--validation is for audio encoders; '{}' is {}",
            path.display(),
            file.spec.describe()
        );
    }
    if let (Some(share), false) = (req.labels, file.modality() == Modality::Image) {
        bail!(
            "--labels {}% is for image encoders (label efficiency); '{}' is {}, probed on all its labels",
            100.0 * share,
            path.display(),
            file.spec.describe()
        );
    }
    match file.modality() {
        Modality::Observations if !recording => bail!(
            "'{}' is an encoder of environment observations ({}): --data must be a recording written by `rlcpc record` ('{}' holds no {})",
            path.display(),
            file.spec.describe(),
            data.display(),
            trajectories::FILE
        ),
        Modality::Audio if !data.is_dir() => bail!(
            "'{}' is an audio encoder: --data must be a directory of audio files, '{}' is not one",
            path.display(),
            data.display()
        ),
        Modality::Text => return text::run(&file, req),
        Modality::Image => return image::run(&file, req),
        _ => {}
    }
    if recording {
        return states::run(&file, req);
    }
    audio::run(&file, req)
}
