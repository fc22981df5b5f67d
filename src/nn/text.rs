//! Text CPC's sentence encoder (van den Oord et al. 2018, §3.3): word embeddings, a 1-D
//! convolution over the words with ReLU, and the mean over the sentence.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use super::init::Init;
use crate::data::text::PAD;

/// `embedding.weight` `[V, E]`; `conv.weight` `[D, E, k]` (PyTorch's Conv1d layout) and
/// `conv.bias` `[D]`.
pub struct SentenceEncoder {
    embedding: Tensor,
    /// The convolution as one matrix `[k·E, D]`: row j·E + e multiplies word t + j's
    /// embedding component e.
    conv_w: Tensor,
    conv_b: Tensor,
    pub kernel: usize,
}

impl SentenceEncoder {
    /// Embeddings uniform in ±1 (word vectors of unit-scale components, as PyTorch's
    /// N(0, 1) roughly); the convolution as PyTorch's Conv1d, uniform in ±1/√(E·k).
    pub fn init(
        vocab: usize,
        embedding: usize,
        kernel: usize,
        features: usize,
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        init.uniform_fan_in(
            &format!("{prefix}.embedding.weight"),
            &[vocab, embedding],
            1,
        )?;
        let fan = embedding * kernel;
        init.uniform_fan_in(
            &format!("{prefix}.conv.weight"),
            &[features, embedding, kernel],
            fan,
        )?;
        init.uniform_fan_in(&format!("{prefix}.conv.bias"), &[features], fan)?;
        Ok(())
    }

    pub fn new(
        vocab: usize,
        embedding: usize,
        kernel: usize,
        features: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let w = vb.get((features, embedding, kernel), "conv.weight")?;
        Ok(SentenceEncoder {
            embedding: vb.get((vocab, embedding), "embedding.weight")?,
            conv_w: w
                .permute((2, 1, 0))?
                .reshape((kernel * embedding, features))?,
            conv_b: vb.get(features, "conv.bias")?,
            kernel,
        })
    }

    /// Sentences of word ids → `[N, D]`. Each sentence is padded to the longest (at
    /// least `kernel` words); the mean runs over the convolution's positions that lie
    /// inside the sentence (one position for sentences shorter than the kernel).
    pub fn forward(&self, sentences: &[&[u32]]) -> candle_core::Result<Tensor> {
        let n = sentences.len();
        let k = self.kernel;
        let len = sentences.iter().map(|s| s.len()).max().unwrap_or(0).max(k);
        let positions = len - k + 1;
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * positions);
        for s in sentences {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(PAD, len - s.len()));
            let valid = s.len().saturating_sub(k - 1).max(1);
            mask.extend((0..positions).map(|t| if t < valid { 1.0 / valid as f32 } else { 0.0 }));
        }
        let dev = self.embedding.device();
        let e = self.embedding.dim(1)?;
        let x = self
            .embedding
            .index_select(&Tensor::from_vec(ids, n * len, dev)?, 0)?
            .reshape((n, len, e))?;
        let windows: Vec<Tensor> = (0..k)
            .map(|j| x.narrow(1, j, positions))
            .collect::<candle_core::Result<_>>()?;
        let h = Tensor::cat(&windows, 2)?
            .reshape((n * positions, k * e))?
            .matmul(&self.conv_w)?
            .broadcast_add(&self.conv_b)?
            .relu()?
            .reshape((n, positions, ()))?;
        let mask = Tensor::from_vec(mask, (n, positions, 1), &Device::Cpu)?.to_device(dev)?;
        h.broadcast_mul(&mask)?.sum(1)
    }
}
