//! Image datasets: IDX files (MNIST, Fashion-MNIST; gzipped or not), the CIFAR-10 binary
//! format, and folders of PNG/JPEG images with one sub-folder per class. Images are held
//! channels-last `[N, H, W, C]` in [0, 1], as the agent's pixel encoder reads them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Invalid;

/// Images of one size with their class indices.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// `[N, H, W, C]`, row-major, in [0, 1].
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// For image folders: the files of the held-out test part (relative paths), which
    /// the trainer stores with the encoder so that a probe can check it tests on them.
    pub held_out: Option<Vec<String>>,
    /// Image files that could not be decoded, with why, left out of the set
    /// ([`ImageSet::report_skipped`] says so, or refuses them under `--strict`).
    pub skipped: Vec<(PathBuf, String)>,
}

impl ImageSet {
    /// Says how many unreadable images were left out, naming the first; with `strict`,
    /// refuses the set instead.
    pub fn report_skipped(&self, strict: bool) -> Result<()> {
        let Some((first, why)) = self.skipped.first() else {
            return Ok(());
        };
        let n = self.skipped.len();
        if strict {
            bail!(
                "cannot decode '{}': {why} ({n} unreadable image(s) in all; without --strict they are left out)",
                first.display()
            );
        }
        crate::errln!(
            "note: {n} unreadable image(s) left out, {} used; the first: '{}': {why} (--strict refuses them)",
            self.len(),
            first.display()
        );
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// The class of a recorded frame, from the environment's true state (`rlcpc record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateLabel {
    /// Which of 8 compass sectors the agent faces (`heading_cos`, `heading_sin`): in a
    /// room with distinct walls, which wall is in view.
    Heading,
    /// Which of 3×3 cells the agent stands in (`agent_x`, `agent_y` cut at their
    /// tertiles over the recording).
    Position,
}

impl StateLabel {
    fn names(self) -> Vec<String> {
        match self {
            StateLabel::Heading => (0..8).map(|i| format!("heading {}°", i * 45)).collect(),
            StateLabel::Position => (0..9)
                .map(|i| format!("cell ({}, {})", i % 3, i / 3))
                .collect(),
        }
    }
}

/// The frames of a recording (`DIR/trajectories.safetensors`, observations `[H, W, C]`
/// of 0–255) as images in [0, 1], labelled by `label`, cut into a training part (the
/// episodes before the cut at `1 − test_fraction`) and a test part (those after).
pub fn load_recording(
    dir: &Path,
    label: StateLabel,
    test_fraction: f64,
) -> Result<(ImageSet, ImageSet)> {
    let traj = super::trajectories::Trajectories::load(dir)?;
    let [h, w, c] = match traj.obs_shape[..] {
        [h, w, c] if c == 1 || c == 3 => [h, w, c],
        _ => bail!(
            "'{}': observations are {:?}, not grey or RGB images [H, W, 1 or 3] (record with an RGB view, e.g. --option obs=rgb)",
            dir.display(),
            traj.obs_shape
        ),
    };
    let col = |name: &str| {
        traj.state_names.iter().position(|n| n == name).with_context(|| {
            format!(
                "'{}': the true state has no '{name}' (it has {:?}), so it cannot give the label '{}'",
                dir.display(),
                traj.state_names,
                serde_json::to_string(&label).unwrap_or_default().trim_matches('"')
            )
        })
    };
    let labels: Vec<u32> = match label {
        StateLabel::Heading => {
            let (ci, si) = (col("heading_cos")?, col("heading_sin")?);
            (0..traj.len())
                .map(|t| {
                    let s = traj.state_row(t);
                    let a = s[si].atan2(s[ci]).rem_euclid(std::f32::consts::TAU);
                    ((a / std::f32::consts::FRAC_PI_4).round() as u32) % 8
                })
                .collect()
        }
        StateLabel::Position => {
            let (xi, yi) = (col("agent_x")?, col("agent_y")?);
            let tertiles = |i: usize| {
                let mut v: Vec<f32> = (0..traj.len()).map(|t| traj.state_row(t)[i]).collect();
                v.sort_by(f32::total_cmp);
                (v[v.len() / 3], v[2 * v.len() / 3])
            };
            let (tx, ty) = (tertiles(xi), tertiles(yi));
            let cell = |v: f32, (a, b): (f32, f32)| (v >= a) as u32 + (v >= b) as u32;
            (0..traj.len())
                .map(|t| {
                    let s = traj.state_row(t);
                    cell(s[xi], tx) + 3 * cell(s[yi], ty)
                })
                .collect()
        }
    };
    let cut = super::trajectories::test_cut(&traj, test_fraction)?;
    let part = |r: std::ops::Range<usize>| ImageSet {
        height: h,
        width: w,
        channels: c,
        pixels: traj.obs[r.start * h * w * c..r.end * h * w * c]
            .iter()
            .map(|v| v / 255.0)
            .collect(),
        labels: labels[r].to_vec(),
        classes: label.names(),
        held_out: None,
        skipped: Vec::new(),
    };
    Ok((part(0..cut), part(cut..traj.len())))
}

/// Which part of a dataset distributed with a train/test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// How a single tree of class folders is split into a training and a test part
/// (`DIR/train/CLASS/…` + `DIR/test/CLASS/…` and IDX/CIFAR-10 sets bring their own).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderSplit {
    /// Share of each class's images held out for testing (stratified).
    pub test_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
}

impl Default for FolderSplit {
    fn default() -> Self {
        FolderSplit {
            test_fraction: 0.2,
            split_seed: 0,
        }
    }
}

impl FolderSplit {
    pub fn validate(&self) -> Result<(), crate::config::Invalid> {
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Invalid::new(
                "data.test_fraction",
                format!("{} (must be in (0, 1))", self.test_fraction),
            ));
        }
        Ok(())
    }
}

/// Largest image, in pixels, any reader accepts (a 16384×16384 picture).
pub const MAX_PIXELS: usize = 1 << 28;
/// Largest decoded image set, in values (4 GiB of f32).
pub const MAX_VALUES: usize = 1 << 30;

/// Largest (inflated) IDX file read.
const MAX_IDX_BYTES: u64 = 4 << 30;

/// Reads a whole file, gunzipping it when it starts with gzip's magic bytes; at most
/// 4 GiB either way (a decompression bomb stops there with an error).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = crate::checkpoint::read_bounded(path, MAX_IDX_BYTES)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("'{}' is not valid gzip", path.display()))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            bail!(
                "'{}' inflates to more than {} GiB",
                path.display(),
                MAX_IDX_BYTES >> 30
            );
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An IDX array of unsigned bytes: its dimensions and data.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let b = read_maybe_gz(path)?;
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        bail!("'{}' is not an IDX file (bad magic number)", path.display());
    }
    if b[2] != 0x08 {
        bail!(
            "'{}': IDX element type 0x{:02x}, only unsigned bytes (0x08) are supported",
            path.display(),
            b[2]
        );
    }
    let nd = b[3] as usize;
    if b.len() < 4 + 4 * nd {
        bail!("'{}' is truncated in its header", path.display());
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("'{}': dimensions {dims:?} overflow", path.display()))?;
    let data = &b[4 + 4 * nd..];
    if data.len() != n {
        bail!(
            "'{}': dimensions {dims:?} need {n} bytes, the file holds {}",
            path.display(),
            data.len()
        );
    }
    Ok((dims, data.to_vec()))
}

/// The first existing path among `name` and `name.gz` in `dir`.
fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .flat_map(|n| [dir.join(n), dir.join(format!("{n}.gz"))])
        .find(|p| p.is_file())
}

/// MNIST-style IDX pair in `dir` (`train-images-idx3-ubyte[.gz]` and labels, or `t10k-`).
pub fn load_idx_dir(dir: &Path, part: Part) -> Result<ImageSet> {
    let prefix = match part {
        Part::Train => "train",
        Part::Test => "t10k",
    };
    let images = find(
        dir,
        &[
            &format!("{prefix}-images-idx3-ubyte"),
            &format!("{prefix}-images.idx3-ubyte"),
        ],
    )
    .with_context(|| format!("no {prefix}-images-idx3-ubyte[.gz] in '{}'", dir.display()))?;
    let labels = find(
        dir,
        &[
            &format!("{prefix}-labels-idx1-ubyte"),
            &format!("{prefix}-labels.idx1-ubyte"),
        ],
    )
    .with_context(|| format!("no {prefix}-labels-idx1-ubyte[.gz] in '{}'", dir.display()))?;
    let (idims, pixels) = read_idx(&images)?;
    let (ldims, labels_raw) = read_idx(&labels)?;
    if idims.len() != 3 || ldims.len() != 1 || idims[0] != ldims[0] {
        bail!(
            "'{}' {idims:?} and '{}' {ldims:?} do not pair up as [N, H, W] images and [N] labels",
            images.display(),
            labels.display()
        );
    }
    if idims[0] == 0 {
        bail!("no images in '{}' (its header says 0)", images.display());
    }
    if idims[1] * idims[2] > MAX_PIXELS || idims[1] == 0 || idims[2] == 0 {
        bail!(
            "'{}': images of {}x{} pixels (at most {MAX_PIXELS} pixels, at least 1)",
            images.display(),
            idims[1],
            idims[2]
        );
    }
    if pixels.len() > MAX_VALUES {
        bail!(
            "'{}': {} pixel values in all, more than the {MAX_VALUES} this reader holds",
            images.display(),
            pixels.len()
        );
    }
    let n_classes = labels_raw.iter().copied().max().unwrap_or(0) as usize + 1;
    Ok(ImageSet {
        height: idims[1],
        width: idims[2],
        channels: 1,
        pixels: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels_raw.iter().map(|&l| l as u32).collect(),
        classes: (0..n_classes).map(|c| c.to_string()).collect(),
        held_out: None,
        skipped: Vec::new(),
    })
}

/// CIFAR-10's binary batches in `dir`: `data_batch_1..5.bin` (train) or `test_batch.bin`;
/// records of one label byte and 3×1024 bytes (red, green, blue planes of 32×32).
pub fn load_cifar10_dir(dir: &Path, part: Part) -> Result<ImageSet> {
    let files: Vec<PathBuf> = match part {
        Part::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        Part::Test => vec![dir.join("test_batch.bin")],
    };
    const REC: usize = 1 + 3 * 1024;
    let mut set = ImageSet {
        height: 32,
        width: 32,
        channels: 3,
        pixels: Vec::new(),
        labels: Vec::new(),
        classes: Vec::new(),
        held_out: None,
        skipped: Vec::new(),
    };
    for f in files.iter().filter(|f| f.is_file()) {
        let b = crate::checkpoint::read_bounded(f, MAX_IDX_BYTES)
            .with_context(|| format!("cannot read '{}'", f.display()))?;
        if b.is_empty() || b.len() % REC != 0 {
            bail!(
                "'{}' holds {} bytes, not a whole number of {REC}-byte CIFAR-10 records",
                f.display(),
                b.len()
            );
        }
        for r in b.chunks_exact(REC) {
            if r[0] > 9 {
                bail!(
                    "'{}': label {} is not a CIFAR-10 class (0..=9)",
                    f.display(),
                    r[0]
                );
            }
            set.labels.push(r[0] as u32);
            let planes = &r[1..];
            for i in 0..1024 {
                for c in 0..3 {
                    set.pixels.push(planes[c * 1024 + i] as f32 / 255.0);
                }
            }
        }
    }
    if set.is_empty() {
        bail!(
            "no CIFAR-10 batches ({}) in '{}'",
            files[0].file_name().unwrap().to_string_lossy(),
            dir.display()
        );
    }
    let meta = dir.join("batches.meta.txt");
    set.classes = match std::fs::read_to_string(&meta) {
        Ok(t) => t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(_) => (0..10).map(|c| c.to_string()).collect(),
    };
    let top = set.labels.iter().copied().max().unwrap_or(0) as usize;
    if top >= set.classes.len() {
        bail!(
            "'{}' names {} class(es) but the labels go up to {top}",
            meta.display(),
            set.classes.len()
        );
    }
    Ok(set)
}

/// The class folders of `dir` and their PNG/JPEG files, sorted.
fn class_files(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list '{}'", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("'{}' has no class sub-folders", dir.display());
    }
    // One file, one class: a link from one class folder into another would count an
    // image in both, with conflicting labels (and leak it across a split).
    let mut seen: std::collections::HashMap<PathBuf, String> = std::collections::HashMap::new();
    let listed: Vec<(String, Vec<PathBuf>)> = classes
        .iter()
        .map(|class_dir| {
            let name = class_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let files = crate::data::walk_files(class_dir, |p| {
                matches!(
                    p.extension()
                        .and_then(|e| e.to_str())
                        .map(str::to_ascii_lowercase)
                        .as_deref(),
                    Some("png" | "jpg" | "jpeg")
                )
            })
            .with_context(|| format!("cannot list '{}'", class_dir.display()))?
            .into_iter()
            .map(|f| class_dir.join(f))
            .collect();
            Ok((name, files))
        })
        .collect::<Result<_>>()?;
    listed
        .into_iter()
        .map(|(name, files)| {
            let mut unique = Vec::with_capacity(files.len());
            for f in files {
                let real = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
                match seen.get(&real) {
                    Some(other) if *other != name => bail!(
                        "'{}' is in class '{name}' and, through a link, in class '{other}' ('{}'): each image must belong to one class",
                        f.display(),
                        real.display()
                    ),
                    // The same file twice in one class (two links): counted once.
                    Some(_) => {}
                    None => {
                        seen.insert(real, name.clone());
                        unique.push(f);
                    }
                }
            }
            Ok((name, unique))
        })
        .collect()
}

/// Decodes `files` (label, path) into one set of `classes`; all images must share one
/// size (greyscale: one channel, else RGB) and stay under [`MAX_PIXELS`].
fn decode_images(classes: Vec<String>, files: &[(u32, PathBuf)], dir: &Path) -> Result<ImageSet> {
    let mut set = ImageSet {
        height: 0,
        width: 0,
        channels: 0,
        pixels: Vec::new(),
        labels: Vec::new(),
        classes,
        held_out: None,
        skipped: Vec::new(),
    };
    for (label, f) in files {
        // The header's size first: a small file can claim a huge picture. A file that
        // does not decode is left out and reported (`--strict` refuses it).
        let (w, h) = match image::image_dimensions(f) {
            Ok(d) => d,
            Err(e) => {
                set.skipped.push((f.clone(), e.to_string()));
                continue;
            }
        };
        if (w as usize) * (h as usize) > MAX_PIXELS {
            bail!(
                "'{}' is {w}x{h}, more than the {MAX_PIXELS} pixels an image may have",
                f.display()
            );
        }
        let img = match image::open(f) {
            Ok(img) => img,
            Err(e) => {
                set.skipped.push((f.clone(), e.to_string()));
                continue;
            }
        };
        let grey = matches!(img.color(), image::ColorType::L8 | image::ColorType::L16);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let c = if grey { 1 } else { 3 };
        if set.labels.is_empty() {
            (set.height, set.width, set.channels) = (h, w, c);
        } else if (h, w, c) != (set.height, set.width, set.channels) {
            bail!(
                "'{}' is {w}x{h} with {c} channel(s), the first image was {}x{} with {}",
                f.display(),
                set.width,
                set.height,
                set.channels
            );
        }
        if set.pixels.len() + h * w * c > MAX_VALUES {
            bail!(
                "the images under '{}' hold more than {MAX_VALUES} values; use fewer or smaller images",
                dir.display()
            );
        }
        if grey {
            set.pixels
                .extend(img.to_luma8().as_raw().iter().map(|&p| p as f32 / 255.0));
        } else {
            set.pixels
                .extend(img.to_rgb8().as_raw().iter().map(|&p| p as f32 / 255.0));
        }
        set.labels.push(*label);
    }
    if set.is_empty() {
        match set.skipped.first() {
            Some((f, why)) => bail!(
                "no readable PNG or JPEG image under '{}': all {} failed to decode, the first '{}': {why}",
                dir.display(),
                set.skipped.len(),
                f.display()
            ),
            None => bail!("no PNG or JPEG images under '{}'", dir.display()),
        }
    }
    Ok(set)
}

/// A folder with one sub-folder per class of PNG/JPEG images, every image (no split).
pub fn load_image_folder(dir: &Path) -> Result<ImageSet> {
    let classes = class_files(dir)?;
    let names = classes.iter().map(|c| c.0.clone()).collect();
    let files: Vec<(u32, PathBuf)> = classes
        .into_iter()
        .enumerate()
        .flat_map(|(l, (_, fs))| fs.into_iter().map(move |f| (l as u32, f)))
        .collect();
    decode_images(names, &files, dir)
}

/// One part of a tree of class folders: `DIR/train/CLASS/…` and `DIR/test/CLASS/…` when
/// both exist (test classes must be training classes), else a stratified seeded split
/// of `DIR/CLASS/…` (`split`). Either way the set records the test part's files.
pub fn load_folder_part(dir: &Path, part: Part, split: &FolderSplit) -> Result<ImageSet> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let train = class_files(&train_dir)?;
        let test = class_files(&test_dir)?;
        let names: Vec<String> = train.iter().map(|c| c.0.clone()).collect();
        let label_of = |n: &str| names.iter().position(|m| m == n).map(|l| l as u32);
        let mut test_files = Vec::new();
        for (n, fs) in &test {
            let l = label_of(n).with_context(|| {
                format!(
                    "'{}' has class '{n}', which '{}' does not have",
                    test_dir.display(),
                    train_dir.display()
                )
            })?;
            test_files.extend(fs.iter().map(|f| (l, f.clone())));
        }
        let held: Vec<String> = test_files.iter().map(|(_, f)| relative(dir, f)).collect();
        let mut set = match part {
            Part::Test => decode_images(names, &test_files, &test_dir)?,
            Part::Train => {
                let files: Vec<(u32, PathBuf)> = train
                    .into_iter()
                    .enumerate()
                    .flat_map(|(l, (_, fs))| fs.into_iter().map(move |f| (l as u32, f)))
                    .collect();
                decode_images(names, &files, &train_dir)?
            }
        };
        set.held_out = Some(held);
        return Ok(set);
    }
    split.validate().map_err(anyhow::Error::msg)?;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let classes = class_files(dir)?;
    let names: Vec<String> = classes.iter().map(|c| c.0.clone()).collect();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (l, (name, mut fs)) in classes.into_iter().enumerate() {
        // Each class its own generator, seeded by its name (FNV-1a): adding a class
        // leaves the others' splits alone.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = rlcpc_envs::SeededRng::seed_from_u64(split.split_seed ^ h);
        fs.shuffle(&mut rng);
        let n_test = if fs.len() < 2 {
            0
        } else {
            ((fs.len() as f64 * split.test_fraction).round() as usize).clamp(1, fs.len() - 1)
        };
        let (te, tr) = fs.split_at(n_test);
        test.extend(te.iter().map(|f| (l as u32, f.clone())));
        train.extend(tr.iter().map(|f| (l as u32, f.clone())));
    }
    train.sort_by(|a, b| a.1.cmp(&b.1));
    test.sort_by(|a, b| a.1.cmp(&b.1));
    if test.is_empty() {
        bail!(
            "'{}': no class has two images, so nothing can be held out for testing",
            dir.display()
        );
    }
    let held: Vec<String> = test.iter().map(|(_, f)| relative(dir, f)).collect();
    let mut set = decode_images(
        names,
        match part {
            Part::Train => &train,
            Part::Test => &test,
        },
        dir,
    )?;
    set.held_out = Some(held);
    Ok(set)
}

fn relative(root: &Path, f: &Path) -> String {
    f.strip_prefix(root)
        .unwrap_or(f)
        .to_string_lossy()
        .into_owned()
}

/// Picks the format from what `dir` holds: IDX files, CIFAR-10 batches, or class folders
/// (split by [`FolderSplit::default`]).
pub fn load(dir: &Path, part: Part) -> Result<ImageSet> {
    load_split(dir, part, &FolderSplit::default())
}

/// [`load`] with the split of a single tree of class folders.
pub fn load_split(dir: &Path, part: Part, split: &FolderSplit) -> Result<ImageSet> {
    if !dir.is_dir() {
        bail!(
            "image directory '{}' does not exist or is not a directory",
            dir.display()
        );
    }
    if find(dir, &["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"]).is_some() {
        load_idx_dir(dir, part)
    } else if dir.join("data_batch_1.bin").is_file() || dir.join("test_batch.bin").is_file() {
        load_cifar10_dir(dir, part)
    } else {
        load_folder_part(dir, part, split)
    }
}
