//! The per-tensor codecs of one stream (one learner, one direction), keyed by
//! tensor name, and their checkpoints.

use super::blocks::BlockLayout;
use super::tensor_codec::BlockCodec;
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::state::{SavedState, SavedTensor};
use std::collections::HashMap;
use std::sync::Arc;

/// The codecs of one tensor: one per block.
pub(crate) struct TensorCodecs {
    pub layout: BlockLayout,
    pub blocks: Vec<BlockCodec>,
}

impl TensorCodecs {
    /// New stage instances for every block of `layout`.
    pub fn new(pipeline: &Pipeline, name: &str, layout: BlockLayout) -> Result<Self> {
        let blocks = (0..layout.count())
            .map(|index| BlockCodec::new(pipeline, name, &layout.block_shape(index), index as u32))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layout, blocks })
    }

    /// The tensor's shape.
    pub fn shape(&self) -> Vec<u64> {
        let mut shape = self.blocks[0].shape().to_vec();
        if let Some(first) = shape.first_mut() {
            *first = self.blocks.iter().map(|b| b.shape()[0]).sum();
        }
        shape
    }

    /// Concatenates the blocks' x̂ of the last encode into one vector (see
    /// [`BlockCodec::encoded_reconstruction`]).
    pub fn encoded_reconstruction(&self, pipeline: &Pipeline) -> Result<Vec<f32>> {
        if let [only] = self.blocks.as_slice() {
            return Ok(only.encoded_reconstruction(pipeline)?.into_owned());
        }
        let mut values = Vec::with_capacity(self.layout.block_lengths().sum());
        for block in &self.blocks {
            values.extend_from_slice(&block.encoded_reconstruction(pipeline)?);
        }
        Ok(values)
    }

    fn reset(&mut self) {
        for block in &mut self.blocks {
            block.reset();
        }
    }
}

/// Per-stream tensor codecs keyed by name.
pub(crate) struct Streams {
    pub pipeline: Arc<Pipeline>,
    pub codecs: HashMap<String, TensorCodecs>,
    /// Whether blocks run the pipeline's fused pair, when it has one.
    pub fused: bool,
}

impl Streams {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            pipeline,
            codecs: HashMap::new(),
            fused: crate::fused::fused_enabled_by_default(),
        }
    }

    /// The block layout the pipeline gives a tensor of `shape`.
    pub fn layout(&self, shape: &[u64]) -> BlockLayout {
        BlockLayout::for_shape(shape, self.pipeline.block_entries())
    }

    /// An error when the stream already has tensor `name` with another shape or cut.
    pub fn check_known(&self, name: &str, layout: &BlockLayout, shape: &[u64]) -> Result<()> {
        match self.codecs.get(name) {
            Some(codecs) if codecs.layout != *layout => Err(Error::Update(format!(
                "tensor `{name}` changed shape from {:?} to {shape:?} within the stream",
                codecs.shape()
            ))),
            _ => Ok(()),
        }
    }

    /// Takes tensor `name`'s codecs out of the map (creating them if new), so
    /// tensors can run in parallel; put them back with `insert`.
    pub fn take(&mut self, name: &str, layout: BlockLayout, shape: &[u64]) -> Result<TensorCodecs> {
        self.check_known(name, &layout, shape)?;
        match self.codecs.remove(name) {
            Some(codecs) => Ok(codecs),
            None => TensorCodecs::new(&self.pipeline, name, layout),
        }
    }

    /// Feeds the opposite link's tensors to the predictors.
    pub fn observe(&mut self, round: u64, received: &crate::update::Update) -> Result<()> {
        for (index, tensor) in received.tensors.iter().enumerate() {
            let shape: Vec<u64> = tensor.data.shape().iter().map(|d| *d as u64).collect();
            if shape.iter().product::<u64>() < self.pipeline.uncompressed_below() {
                continue;
            }
            let layout = self.layout(&shape);
            let mut codecs = self.take(&tensor.name, layout, &shape)?;
            let values = tensor.data.as_standard_layout();
            let values = values.as_slice().expect("standard layout is contiguous");
            let mut result = Ok(());
            for (block_index, block) in codecs.blocks.iter_mut().enumerate() {
                let range = codecs.layout.block_range(block_index);
                let ctx = block.context(round, index);
                result = block.observe(&ctx, &values[range]);
                if result.is_err() {
                    break;
                }
            }
            self.codecs.insert(tensor.name.clone(), codecs);
            result?;
        }
        Ok(())
    }

    /// Forgets every stage's state.
    pub fn reset(&mut self) {
        for codecs in self.codecs.values_mut() {
            codecs.reset();
        }
    }

    /// The stream state (round and every stage's state), serialized.
    pub fn save(&self, round: u64) -> Result<Vec<u8>> {
        let mut names: Vec<&String> = self.codecs.keys().collect();
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let codecs = &self.codecs[name];
            tensors.push(SavedTensor {
                name: name.clone(),
                shape: codecs.shape(),
                blocks: codecs
                    .blocks
                    .iter()
                    .map(BlockCodec::save_states)
                    .collect::<Result<_>>()?,
            });
        }
        Ok(crate::state::save(&SavedState {
            fingerprint: self.pipeline.fingerprint(),
            round,
            tensors,
        }))
    }

    /// Restores a state written by [`Streams::save`]: new stage instances,
    /// swapped in only when every one restored. Returns the round.
    pub fn load(&mut self, bytes: &[u8]) -> Result<u64> {
        let saved = crate::state::load(bytes)?;
        if saved.fingerprint != self.pipeline.fingerprint() {
            return Err(Error::Message(format!(
                "saved state belongs to another pipeline than `{}`",
                self.pipeline.name()
            )));
        }
        let mut codecs = HashMap::with_capacity(saved.tensors.len());
        for tensor in saved.tensors {
            let layout = if tensor.blocks.len() == 1 {
                BlockLayout::whole(&tensor.shape)
            } else {
                self.layout(&tensor.shape)
            };
            if layout.count() != tensor.blocks.len() {
                return Err(Error::Message(format!(
                    "saved state: tensor `{}` of shape {:?} has {} blocks, this pipeline cuts it into {}",
                    tensor.name,
                    tensor.shape,
                    tensor.blocks.len(),
                    layout.count()
                )));
            }
            let mut restored = TensorCodecs::new(&self.pipeline, &tensor.name, layout)?;
            for (block, states) in restored.blocks.iter_mut().zip(&tensor.blocks) {
                block.load_states(states)?;
            }
            codecs.insert(tensor.name, restored);
        }
        self.codecs = codecs;
        Ok(saved.round)
    }
}
