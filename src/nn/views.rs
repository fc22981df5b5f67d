//! The networks of the view-based trainers (SimCLR, MoCo v2): the encoder f whose h is
//! exported and probed — the small ResNet or the agent's conv encoder — and the
//! projection head g.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::encoders::{Encoder, EncoderSpec};
use super::init::Init;
use super::lean::resnet::{BnMode, LeanResNet};
use super::lean::LeanAgentEncoder;
use super::resnet::{BatchNorm, ResNet};
use crate::data::images::ImageSet;
use crate::encoder_file::EncoderFile;

/// f: the network whose output h is exported and probed.
pub enum ViewEncoder {
    Resnet(ResNet),
    /// The agent's conv encoder and the factor taking [0, 1] pixels to its 0–255 input.
    Agent(Encoder, f64),
}

impl ViewEncoder {
    /// f over the parameters under `prefix` (e.g. `encoder`) of `varmap`.
    pub fn build(spec: &EncoderSpec, varmap: &VarMap, prefix: &str) -> Result<Self> {
        Ok(match spec {
            EncoderSpec::Resnet { widths, blocks, .. } => {
                ViewEncoder::Resnet(ResNet::new(widths, blocks, varmap, prefix)?)
            }
            EncoderSpec::Conv { input_scale, .. } => {
                let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
                ViewEncoder::Agent(
                    Encoder::new(spec.clone(), vb.pp(prefix))?,
                    1.0 / *input_scale as f64,
                )
            }
            other => bail!(
                "{} is not an image encoder of the view trainers",
                other.describe()
            ),
        })
    }

    /// `[N, H, W, C]` in [0, 1] → h `[N, D]`; `train` selects BatchNorm's batch
    /// statistics (in `groups` groups) over its running ones.
    pub fn forward(&self, x: &Tensor, train: bool, groups: usize) -> Result<Tensor> {
        use candle_core::Module;
        Ok(match self {
            ViewEncoder::Resnet(r) => r.forward(x, train, groups)?,
            ViewEncoder::Agent(e, scale) => e.forward(&(x * *scale)?)?,
        })
    }

    /// A random-init network of `spec` (the probes' twin).
    pub fn random(spec: &EncoderSpec, seed: u64) -> Result<(Self, VarMap)> {
        let mut init = Init::new(seed, &Device::Cpu);
        spec.init(&mut init, "encoder")?;
        Ok((
            ViewEncoder::build(spec, &init.varmap, "encoder")?,
            init.varmap,
        ))
    }

    /// The encoder of an exported file.
    pub fn from_file(f: &EncoderFile) -> Result<(Self, VarMap)> {
        let mut init = Init::new(0, &Device::Cpu);
        f.spec
            .init(&mut init, "encoder")
            .map_err(|e| f.mismatch(e.to_string()))?;
        f.load_into(&init.varmap, &["encoder."])?;
        Ok((
            ViewEncoder::build(&f.spec, &init.varmap, "encoder")?,
            init.varmap,
        ))
    }

    /// h of images `idx` of `set` in eval mode, as rows, in batches of 256.
    pub fn features(&self, set: &ImageSet, idx: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for chunk in idx.chunks(256) {
            let mut px = Vec::with_capacity(chunk.len() * set.image_len());
            for &i in chunk {
                px.extend_from_slice(set.image(i));
            }
            let x = Tensor::from_vec(
                px,
                (chunk.len(), set.height, set.width, set.channels),
                &Device::Cpu,
            )?;
            out.extend(
                self.forward(&x, false, 1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }
}

/// f on host slices ([`crate::nn::lean`]): the ResNet or the agent's conv encoder over
/// the same candle variables as [`ViewEncoder`], its forward and its gradients without
/// candle's autograd. The trainers' f (`train.learner = "auto"`), the probes' features
/// and fine-tuning.
pub enum LeanViewEncoder {
    Resnet(Box<LeanResNet>),
    Agent(LeanAgentEncoder),
}

impl LeanViewEncoder {
    /// f of `spec` on `[N, H, W, C]` images of shape `hwc` over the parameters under
    /// `prefix` of `varmap`.
    pub fn new(
        spec: &EncoderSpec,
        hwc: (usize, usize, usize),
        varmap: &VarMap,
        prefix: &str,
    ) -> Result<Self> {
        Ok(match spec {
            EncoderSpec::Resnet { widths, blocks, .. } => LeanViewEncoder::Resnet(Box::new(
                LeanResNet::new(widths, blocks, hwc, varmap, prefix)?,
            )),
            // The view trainers' pixels are in [0, 1] already (the candle path multiplies
            // them by 1 / input_scale before the encoder scales them back).
            EncoderSpec::Conv { fc, .. } => {
                LeanViewEncoder::Agent(LeanAgentEncoder::new(hwc, *fc, 1.0, 0, varmap, prefix)?)
            }
            other => bail!("{} has no lean path", other.describe()),
        })
    }

    /// h `[n, D]` of the `n` images `x` (BatchNorm, where there is one, as `mode` says).
    pub fn forward(&mut self, x: &[f32], n: usize, mode: BnMode) -> Result<&[f32]> {
        match self {
            LeanViewEncoder::Resnet(r) => r.forward(x, n, mode),
            LeanViewEncoder::Agent(a) => a.forward(x, n),
        }
    }

    /// Every parameter's gradient from that of the last forward's h, into `grads`.
    pub fn backward(&mut self, d_h: &[f32], grads: &mut GradStore) -> Result<()> {
        match self {
            LeanViewEncoder::Resnet(r) => r.backward(d_h, grads),
            LeanViewEncoder::Agent(a) => a.backward(d_h, grads),
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            LeanViewEncoder::Resnet(r) => r.out_dim(),
            LeanViewEncoder::Agent(a) => a.out_dim(),
        }
    }

    /// h of images `idx` of `set` in eval mode, as rows, in batches of 256 (as
    /// [`ViewEncoder::features`]).
    pub fn features(&mut self, set: &ImageSet, idx: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(idx.len() * self.out_dim());
        let mut px = Vec::new();
        for chunk in idx.chunks(256) {
            px.clear();
            for &i in chunk {
                px.extend_from_slice(set.image(i));
            }
            out.extend_from_slice(self.forward(&px, chunk.len(), BnMode::Eval)?);
        }
        Ok(out)
    }
}

/// g: hidden Linear (+ BatchNorm) + ReLU layers, then a Linear.
pub struct Head {
    layers: Vec<(Tensor, Tensor, Option<BatchNorm>)>,
}

impl Head {
    pub fn init(
        init: &mut Init,
        prefix: &str,
        dims: &[usize],
        bn: bool,
    ) -> candle_core::Result<()> {
        for i in 0..dims.len() - 1 {
            let p = format!("{prefix}.{i}");
            init.uniform_fan_in(&format!("{p}.weight"), &[dims[i + 1], dims[i]], dims[i])?;
            init.uniform_fan_in(&format!("{p}.bias"), &[dims[i + 1]], dims[i])?;
            if bn && i + 2 < dims.len() {
                BatchNorm::init(init, &format!("{p}.bn"), dims[i + 1])?;
            }
        }
        Ok(())
    }

    pub fn new(
        varmap: &VarMap,
        prefix: &str,
        layers: usize,
        bn: bool,
    ) -> candle_core::Result<Self> {
        let get = |n: &str| -> candle_core::Result<Tensor> {
            varmap
                .data()
                .lock()
                .expect("varmap lock")
                .get(n)
                .map(|v| v.as_tensor().clone())
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter '{n}'")))
        };
        let mut out = Vec::new();
        for i in 0..layers {
            let p = format!("{prefix}.{i}");
            let norm = if bn && i + 1 < layers {
                Some(BatchNorm::new(varmap, &format!("{p}.bn"))?)
            } else {
                None
            };
            out.push((
                get(&format!("{p}.weight"))?,
                get(&format!("{p}.bias"))?,
                norm,
            ));
        }
        Ok(Head { layers: out })
    }

    pub fn forward(&self, h: &Tensor, train: bool, groups: usize) -> candle_core::Result<Tensor> {
        let mut x = h.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b, bn)) in self.layers.iter().enumerate() {
            x = x.matmul(&w.t()?)?.broadcast_add(b)?;
            if let Some(bn) = bn {
                x = bn.forward(&x, train, groups)?;
            }
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}
