//! The BERT encoder's forward pass for sentence embedding on the CPU.
//!
//! The layers and weights are candle's (`candle_nn` linear, embedding and layer-norm modules,
//! the `candle_transformers` BERT configuration); the difference from
//! `candle_transformers::models::bert::BertModel` is where the time went when profiled on
//! 256-word-piece documents (BENCHMARKS.md):
//! - attention: the generic softmax allocates and walks the `batch x heads x len x len` score
//!   tensor six times (scale, mask, max, subtract, exp, divide), one thread; here one in-place
//!   pass per row, rows in parallel, and padded keys are skipped instead of masked;
//! - GELU: the exact erf GELU (as sentence-transformers computes it) in place, in parallel;
//! - query, key and value come from one matrix product over the concatenated weights.
//!
//! Results match candle's BERT (and sentence-transformers) to float rounding: the golden tests
//! in `tests/local.rs` hold either forward to 1e-4.

use candle_core::{CpuStorage, DType, Layout, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

/// Rows of at most this many floats are handed to one rayon task (GELU).
const CHUNK: usize = 16 * 1024;

struct Layer {
    /// Query, key and value weights stacked: `(3 * hidden, hidden)`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder (no pooler: sentence-transformers pools the token vectors itself).
pub(crate) struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    act: HiddenAct,
}

fn stacked_linear(vb: &VarBuilder, names: [&str; 3], hidden: usize) -> Result<Linear> {
    let mut weights = Vec::with_capacity(3);
    let mut biases = Vec::with_capacity(3);
    for name in names {
        let vb = vb.pp(name);
        weights.push(vb.get((hidden, hidden), "weight")?);
        biases.push(vb.get(hidden, "bias")?);
    }
    Ok(Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)))
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> Result<Layer> {
        let h = c.hidden_size;
        let attn = vb.pp("attention");
        Ok(Layer {
            qkv: stacked_linear(&attn.pp("self"), ["query", "key", "value"], h)?,
            attn_out: linear(h, h, attn.pp("output").pp("dense"))?,
            attn_norm: layer_norm(h, c.layer_norm_eps, attn.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }
}

impl Bert {
    /// Loads the weights, with or without a `bert.` (or `<model_type>.`) prefix, as candle's
    /// BERT does.
    pub(crate) fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let mut prefixes = vec![String::new(), "bert.".to_string()];
        if let Some(t) = &c.model_type {
            prefixes.push(format!("{t}."));
        }
        let root = prefixes
            .iter()
            .find(|p| vb.contains_tensor(&format!("{p}embeddings.word_embeddings.weight")))
            .cloned()
            .unwrap_or_default();
        let vb = if root.is_empty() { vb } else { vb.pp(root.trim_end_matches('.')) };
        let e = vb.pp("embeddings");
        let h = c.hidden_size;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            embed_norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
            hidden: h,
            act: c.hidden_act,
        })
    }

    /// Token vectors `(batch, len, hidden)` of `ids` `(batch, len)`, where row `b` holds
    /// `lens[b]` real tokens followed by padding (the padded positions' outputs are garbage
    /// and must be masked by the caller's pooling).
    pub(crate) fn forward(&self, ids: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let type_ids = Tensor::zeros(len, DType::U32, device)?;
        let x = self.word.forward(ids)?;
        let x = x.broadcast_add(&(self.position.forward(&positions)? + self.token_type.forward(&type_ids)?)?)?;
        let mut x = self.embed_norm.forward(&x)?.reshape((n * len, self.hidden))?;
        let softmax = MaskedSoftmax {
            lens: lens.to_vec(),
            rows_per_batch: self.heads * len,
            len,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        };
        for layer in &self.layers {
            x = self.layer(layer, &x, n, len, &softmax)?;
        }
        x.reshape((n, len, self.hidden))
    }

    fn layer(&self, l: &Layer, x: &Tensor, n: usize, len: usize, softmax: &MaskedSoftmax) -> Result<Tensor> {
        let (h, heads, d) = (self.hidden, self.heads, self.head_dim);
        // (n * len, 3h) -> (3, n, heads, len, d)
        let qkv = l.qkv.forward(x)?.reshape((n, len, 3, heads, d))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.t()?)?;
        scores.inplace_op1(softmax)?;
        let context = scores.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((n * len, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward(&x)?;
        let inner = match self.act {
            HiddenAct::Gelu => {
                inner.inplace_op1(&GeluErf)?;
                inner
            }
            HiddenAct::GeluApproximate => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        l.out_norm.forward(&(l.output.forward(&inner)? + x)?)
    }
}

fn contiguous_f32<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: the tensor must be contiguous");
    };
    match storage {
        CpuStorage::F32(v) => v.get_mut(start..end).ok_or_else(|| candle_core::Error::Msg(format!("{op}: bad layout"))),
        _ => candle_core::bail!("{op}: f32 only"),
    }
}

/// Scale, key mask and softmax over the last dimension of `(batch, heads, len, len)` scores,
/// in place. Keys past `lens[b]` are padding: their probability is 0.
struct MaskedSoftmax {
    lens: Vec<usize>,
    rows_per_batch: usize,
    len: usize,
    scale: f32,
}

impl candle_core::InplaceOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout, self.name())?;
        if data.len() != self.lens.len() * self.rows_per_batch * self.len {
            candle_core::bail!("masked-softmax: {} values for {} texts of {}", data.len(), self.lens.len(), self.len);
        }
        data.par_chunks_mut(self.len).enumerate().for_each(|(row, xs)| {
            let valid = self.lens.get(row / self.rows_per_batch).copied().unwrap_or(self.len).clamp(1, self.len);
            let (keys, padding) = xs.split_at_mut(valid);
            let max = keys.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * self.scale;
            let mut sum = 0f32;
            for v in keys.iter_mut() {
                *v = (*v * self.scale - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            keys.iter_mut().for_each(|v| *v *= inv);
            padding.fill(0.0);
        });
        Ok(())
    }
}

/// `x * (1 + erf(x / sqrt 2)) / 2`, in place (candle's `gelu_erf`, in parallel).
struct GeluErf;

impl candle_core::InplaceOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(CHUNK).for_each(|xs| {
            for v in xs {
                *v = (candle_core::cpu::erf::erf_f32(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *v;
            }
        });
        Ok(())
    }
}
