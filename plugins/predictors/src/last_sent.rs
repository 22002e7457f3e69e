//! `last-sent`: ResFed's Res-0 predictor, the last reconstruction.
//!
//! `pred_t = x̂_{t-1}` (zeros before the first commit), so the stage sends the
//! residual against what the receiver already holds. Both ends commit the same
//! reconstruction, so they never drift. From ResFed (Song, Zhou, Lyu, Festag,
//! Knoll, 2022-2024); with a lossy quantizer it is also EF21's state update
//! (Richtárik, Sokolov, Fatkhullin, 2021).
//!
//! ```yaml
//! - predictor: { use: last-sent }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::state;

/// The Res-0 predictor.
pub struct LastSent {
    len: usize,
    /// x̂_{t-1}; empty before the first commit.
    last: Vec<f32>,
}

impl Stage for LastSent {
    type Config = NoParams;
    const INFO: StageInfo = StageInfo::new(
        "last-sent",
        "ResFed Res-0 predictor: the prediction is the last reconstruction both ends hold \
              (zeros at first), so only the residual is sent.",
    )
    .with_flags(StageFlags::STATEFUL);

    fn new(_config: NoParams, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            len: tensor.len() as usize,
            last: Vec::new(),
        })
    }
}

impl Predictor for LastSent {
    fn predict(&mut self, _ctx: &CallContext, out: &mut RVec<f32>) -> SdkResult<()> {
        out.clear();
        if self.last.is_empty() {
            out.resize(self.len, 0.0);
        } else {
            out.extend_from_slice(&self.last);
        }
        Ok(())
    }

    fn commit(&mut self, _ctx: &CallContext, reconstruction: &[f32]) -> SdkResult<()> {
        ensure_len("reconstruction", reconstruction.len(), self.len as u64)?;
        self.last.clear();
        self.last.extend_from_slice(reconstruction);
        Ok(())
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(b"LST1", &[&self.last], out);
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        self.last = state::read_one(b"LST1", bytes, self.len)?;
        Ok(())
    }

    fn reset(&mut self) {
        self.last.clear();
    }
}
