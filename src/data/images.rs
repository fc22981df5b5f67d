//! Image datasets: IDX files (MNIST, Fashion-MNIST; gzipped or not), the CIFAR-10 binary
//! format, and folders of PNG/JPEG images with one sub-folder per class. Images are held
//! channels-last `[N, H, W, C]` in [0, 1], as the agent's pixel encoder reads them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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
}

impl ImageSet {
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

/// Which part of a dataset distributed with a train/test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// Reads a whole file, gunzipping it when it starts with gzip's magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("'{}' is not valid gzip", path.display()))?;
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
    let n: usize = dims.iter().product();
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
    let n_classes = labels_raw.iter().copied().max().unwrap_or(0) as usize + 1;
    Ok(ImageSet {
        height: idims[1],
        width: idims[2],
        channels: 1,
        pixels: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels_raw.iter().map(|&l| l as u32).collect(),
        classes: (0..n_classes).map(|c| c.to_string()).collect(),
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
    };
    for f in files.iter().filter(|f| f.is_file()) {
        let b = std::fs::read(f).with_context(|| format!("cannot read '{}'", f.display()))?;
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
    Ok(set)
}

/// A folder with one sub-folder per class of PNG/JPEG images, all of one size; greyscale
/// images give one channel, others RGB.
pub fn load_image_folder(dir: &Path) -> Result<ImageSet> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list '{}'", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("'{}' has no class sub-folders", dir.display());
    }
    let mut set = ImageSet {
        height: 0,
        width: 0,
        channels: 0,
        pixels: Vec::new(),
        labels: Vec::new(),
        classes: Vec::new(),
    };
    for (label, class_dir) in classes.iter().enumerate() {
        set.classes.push(
            class_dir
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned(),
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(class_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension()
                        .and_then(|e| e.to_str())
                        .map(str::to_ascii_lowercase)
                        .as_deref(),
                    Some("png" | "jpg" | "jpeg")
                )
            })
            .collect();
        files.sort();
        for f in files {
            let img =
                image::open(&f).with_context(|| format!("cannot decode '{}'", f.display()))?;
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
            if grey {
                set.pixels
                    .extend(img.to_luma8().as_raw().iter().map(|&p| p as f32 / 255.0));
            } else {
                set.pixels
                    .extend(img.to_rgb8().as_raw().iter().map(|&p| p as f32 / 255.0));
            }
            set.labels.push(label as u32);
        }
    }
    if set.is_empty() {
        bail!("no PNG or JPEG images under '{}'", dir.display());
    }
    Ok(set)
}

/// Picks the format from what `dir` holds: IDX files, CIFAR-10 batches, or class folders.
pub fn load(dir: &Path, part: Part) -> Result<ImageSet> {
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
        load_image_folder(dir)
    }
}
