//! An encoder file as a function on plain arrays: rlcpc's own forward pass of any
//! encoder it writes, for callers outside the trainers (Python's
//! `rlcpc.load_encoder(path)(x)` runs this).
//!
//! [`FileEncoder::read`] reads a file through [`EncoderFile`] (an agent checkpoint, an
//! exported encoder, a trainer's `encoder.safetensors` or checkpoint) and builds its
//! network on the CPU; [`FileEncoder::forward`] maps a batch `[N, ...]` of f32 inputs in
//! the encoder's own units to features:
//!
//! | encoder | input | output |
//! | --- | --- | --- |
//! | `mlp` | `[N, in_dim]` (or any shape of `in_dim` values per item) | `[N, D]` |
//! | `conv` | `[N, H, W, C]` observations as the environment gives them (0–255 pixels) | `[N, D]` |
//! | `audio` | `[N, L]` waveforms at the spec's sample rate | `[N, ⌈L / ∏ strides⌉, C]` |
//! | `patches` | `[N, H, W, C]` images in [0, 1] | `[N, rows, cols, D]`, one vector per patch |
//! | `resnet` | `[N, H, W, C]` images in [0, 1] | `[N, D]` (BatchNorm's running statistics) |
//! | `text` | sentences of word ids ([`FileEncoder::forward_text`]) | `[N, D]` |

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::checkpoint::keys;
use crate::encoder_file::EncoderFile;
use crate::nn::audio::AudioEncoder;
use crate::nn::encoders::{Encoder, EncoderSpec};
use crate::nn::init::Init;
use crate::nn::resnet::ResNet;
use crate::nn::text::SentenceEncoder;
use crate::pretrain::image::ImageNet;

/// Items per forward pass at most (sentences, small inputs) ...
const CHUNK: usize = 256;
/// ... and input values per pass at most (at least one item): bounds the memory of a
/// large batch of long waveforms or large images (activations are a few times this per
/// layer).
const CHUNK_VALUES: usize = 1 << 19;

enum Net {
    /// `mlp` and `conv`: the agent's encoders.
    Obs(Encoder),
    Audio(AudioEncoder),
    /// Image CPC's patch encoder on its grid (the trainer's own network).
    Patches(Box<ImageNet>),
    Resnet(ResNet),
    Text(SentenceEncoder),
}

/// An encoder file with its network built on the CPU.
pub struct FileEncoder {
    pub file: EncoderFile,
    net: Net,
}

impl FileEncoder {
    /// Reads `path` (a file, or a run directory: its encoder or checkpoint) and builds
    /// the network, every tensor checked against the spec.
    pub fn read(path: &Path) -> Result<Self> {
        let path = crate::encoder_file::encoder_path(path);
        let file = EncoderFile::read(&path)?;
        if let Some(why) = unbuildable(&file.spec) {
            return Err(file.mismatch(why));
        }
        let dev = Device::Cpu;
        let mut init = Init::new(0, &dev);
        file.spec
            .init(&mut init, "encoder")
            .map_err(|e| file.mismatch(e.to_string()))?;
        file.load_into(&init.varmap, &["encoder."])?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev).pp("encoder");
        let built = match &file.spec {
            EncoderSpec::Mlp { .. } | EncoderSpec::Conv { .. } => {
                Encoder::new(file.spec.clone(), vb).map(Net::Obs)
            }
            EncoderSpec::Audio { .. } => {
                let arch = file.spec.audio().expect("an audio spec");
                AudioEncoder::new(&arch, vb).map(Net::Audio)
            }
            EncoderSpec::Patches { .. } => {
                let (net, _) = ImageNet::from_file(&file)?;
                Ok(Net::Patches(Box::new(net)))
            }
            EncoderSpec::Resnet { widths, blocks, .. } => {
                ResNet::new(widths, blocks, &init.varmap, "encoder").map(Net::Resnet)
            }
            EncoderSpec::Text {
                vocab,
                embedding,
                kernel,
                features,
            } => SentenceEncoder::new(*vocab, *embedding, *kernel, *features, vb).map(Net::Text),
        };
        let net = built.map_err(|e| file.mismatch(format!("{e:#}")))?;
        Ok(FileEncoder { file, net })
    }

    pub fn spec(&self) -> &EncoderSpec {
        &self.file.spec
    }

    /// The shape of one input item, where it is fixed (`None` for waveforms and text).
    pub fn item_shape(&self) -> Option<Vec<usize>> {
        match self.spec() {
            EncoderSpec::Mlp { in_dim, .. } => Some(vec![*in_dim]),
            EncoderSpec::Audio { .. } | EncoderSpec::Text { .. } => None,
            s => s.image_input().map(|d| d.to_vec()),
        }
    }

    /// The encoder's `encoder.*` tensors and the context network's `context.*` (an
    /// agent's LSTM core renamed), sorted by name, as `export-encoder` writes them.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.file.export_parts()?.0)
    }

    /// The trainer's vocabulary of a text encoder (word `i` has id `i`), if the file
    /// holds one.
    pub fn vocab(&self) -> Option<crate::data::text::Vocab> {
        let words: Vec<String> = self.file.file.meta(keys::VOCAB).ok()?;
        Some(crate::data::text::Vocab::from_words(words))
    }

    /// Features of the batch `data` of shape `shape` (`[N, ...]`, row-major); returns
    /// the features and their shape. The input is checked against the spec first.
    pub fn forward(&self, data: &[f32], shape: &[usize]) -> Result<(Vec<f32>, Vec<usize>)> {
        let want = || match self.item_shape() {
            Some(s) => format!("[N, {}]", join(&s)),
            None => "[N, samples]".into(),
        };
        let Some((&n, item)) = shape.split_first() else {
            bail!(
                "the {} needs a batch {}, got a scalar",
                self.spec().describe(),
                want()
            );
        };
        if data.len() != shape.iter().product::<usize>() {
            bail!("{} values do not fill shape [{}]", data.len(), join(shape));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!("input value {i} is {} (inputs must be finite)", data[i]);
        }
        let per_item: usize = item.iter().product();
        let ok = match (self.spec(), self.item_shape()) {
            (EncoderSpec::Text { .. }, _) => bail!(
                "the {} reads sentences of word ids, not an array of floats",
                self.spec().describe()
            ),
            (EncoderSpec::Mlp { in_dim, .. }, _) => !item.is_empty() && per_item == *in_dim,
            (EncoderSpec::Audio { .. }, _) => item.len() == 1 && item[0] > 0,
            (_, Some(s)) => item == s.as_slice(),
            (_, None) => false,
        };
        if !ok {
            bail!(
                "the {} reads {}, got [{}]",
                self.spec().describe(),
                want(),
                join(shape)
            );
        }
        let mut out = Vec::new();
        let mut out_item = Vec::new();
        let items = (CHUNK_VALUES / per_item.max(1)).clamp(1, CHUNK);
        for (i, chunk) in data.chunks(items * per_item.max(1)).enumerate() {
            let m = chunk.len().checked_div(per_item).unwrap_or(0);
            let mut dims = vec![m];
            dims.extend_from_slice(item);
            let x = Tensor::from_slice(chunk, dims.as_slice(), &Device::Cpu)?;
            let y = self.forward_tensor(&x)?;
            if i == 0 {
                out_item = y.dims()[1..].to_vec();
            }
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
        }
        if n == 0 {
            out_item = self.empty_item_shape(item);
        }
        let mut out_shape = vec![n];
        out_shape.extend(out_item);
        Ok((out, out_shape))
    }

    fn forward_tensor(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.net {
            Net::Obs(e) => e.forward(x)?,
            Net::Audio(e) => e.forward(x)?,
            Net::Resnet(r) => r.forward(x, false, 1)?,
            Net::Patches(net) => net.features(&x.flatten_all()?.to_vec1::<f32>()?, x.dim(0)?)?,
            Net::Text(_) => unreachable!("text is refused by forward"),
        })
    }

    /// The feature shape of one item, for an empty batch.
    fn empty_item_shape(&self, item: &[usize]) -> Vec<usize> {
        let d = self.spec().out_dim();
        match (&self.net, self.spec()) {
            (_, EncoderSpec::Audio { strides, .. }) => {
                vec![crate::nn::audio::frames(item[0], strides), d]
            }
            (Net::Patches(net), _) => {
                let (r, c) = net.grid.size().unwrap_or((0, 0));
                vec![r, c, d]
            }
            _ => vec![d],
        }
    }

    /// Features `[N, D]` of sentences of word ids (each id below the vocabulary size;
    /// 0 is padding, 1 an unknown word).
    pub fn forward_text(&self, sentences: &[Vec<u32>]) -> Result<(Vec<f32>, Vec<usize>)> {
        let Net::Text(e) = &self.net else {
            bail!("the {} does not read sentences", self.spec().describe());
        };
        let EncoderSpec::Text {
            vocab, features, ..
        } = *self.spec()
        else {
            unreachable!("a text network has a text spec")
        };
        for (i, s) in sentences.iter().enumerate() {
            if let Some(&id) = s.iter().find(|&&id| id as usize >= vocab) {
                bail!("sentence {i} holds word id {id}, past the vocabulary of {vocab} words");
            }
        }
        if sentences.is_empty() {
            return Ok((Vec::new(), vec![0, features]));
        }
        let mut out = Vec::with_capacity(sentences.len() * features);
        for chunk in sentences.chunks(CHUNK) {
            let refs: Vec<&[u32]> = chunk.iter().map(|s| s.as_slice()).collect();
            out.extend(e.forward(&refs)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((out, vec![sentences.len(), features]))
    }
}

/// Why no network can be built from `spec` (sizes the trainers never write), if so.
fn unbuildable(spec: &EncoderSpec) -> Option<String> {
    match spec {
        EncoderSpec::Mlp { in_dim, hidden, .. }
            if *in_dim == 0 || hidden.is_empty() || hidden.contains(&0) =>
        {
            Some(format!("the {} has an empty layer", spec.describe()))
        }
        EncoderSpec::Text {
            vocab,
            embedding,
            kernel,
            features,
        } if *vocab < 2 || *embedding == 0 || *kernel == 0 || *features == 0 => {
            Some(format!("the {} has a zero size", spec.describe()))
        }
        EncoderSpec::Resnet {
            channels,
            widths,
            blocks,
            ..
        } if *channels == 0
            || widths.is_empty()
            || widths.len() != blocks.len()
            || widths.contains(&0) =>
        {
            Some(format!(
                "the {} needs one block count per width, none zero",
                spec.describe()
            ))
        }
        EncoderSpec::Patches {
            channels,
            features,
            layers,
            ..
        } if *channels == 0 || *features == 0 || *layers == 0 => {
            Some(format!("the {} has a zero size", spec.describe()))
        }
        EncoderSpec::Audio { channels, .. } | EncoderSpec::Conv { fc: channels, .. }
            if *channels == 0 =>
        {
            Some(format!("the {} has a zero size", spec.describe()))
        }
        _ => None,
    }
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
