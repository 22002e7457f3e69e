//! `res1`: ResFed's Res-1 predictor, the last reconstruction plus half the last
//! step of the opposite link's trajectory.
//!
//! With `S` the reconstructions committed on this link (`commit`) and `O` the
//! tensors received on the opposite link (`observe`), index -1 newest:
//! `pred = S[-1] + ½·(O[-1] - O[-2])`. While `O` has fewer than two entries the
//! prediction is `S[-1]` (Res-0), and before any commit it is zeros. One rule is
//! used identically on both ends, so they cannot drift as long as both are fed the
//! same `S` and `O` (the public reference code swapped the rules between sender and
//! receiver, which drifts). From ResFed (Song, Zhou, Lyu, Festag, Knoll, "ResFed:
//! Communication-Efficient Federated Learning With Deep Compressed Residuals",
//! 2022-2024).
//!
//! ```yaml
//! - predictor: { use: res1 }
//! ```

use gradcodec_sdk::prelude::*;
use gradcodec_sdk::state;
use serde::{Deserialize, Serialize};

/// `res1` has no parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Res1Config {}

impl StageConfig for Res1Config {}

/// The Res-1 predictor.
pub struct Res1 {
    len: usize,
    /// S[-1]; empty before the first commit.
    last_sent: Vec<f32>,
    /// O[-2]; empty while fewer than two tensors were observed.
    previous_observed: Vec<f32>,
    /// O[-1]; empty before the first observation.
    last_observed: Vec<f32>,
}

impl Stage for Res1 {
    type Config = Res1Config;
    const INFO: StageInfo = StageInfo::new(
        "res1",
        "ResFed Res-1 predictor: pred = S[-1] + (O[-1] - O[-2])/2 with S the committed \
              reconstructions and O the tensors observed on the opposite link; S[-1] while \
              fewer than two were observed, zeros before the first commit.",
    )
    .with_flags(StageFlags::STATEFUL);

    fn new(_config: Res1Config, tensor: &TensorSpec) -> SdkResult<Self> {
        Ok(Self {
            len: tensor.len() as usize,
            last_sent: Vec::new(),
            previous_observed: Vec::new(),
            last_observed: Vec::new(),
        })
    }
}

impl Predictor for Res1 {
    fn predict(&mut self, _ctx: &CallContext, out: &mut RVec<f32>) -> SdkResult<()> {
        out.clear();
        if self.last_sent.is_empty() {
            out.resize(self.len, 0.0);
        } else if self.previous_observed.is_empty() {
            out.extend_copied(&self.last_sent);
        } else {
            let len = self.last_sent.len();
            let (sent, last, previous) = (
                &self.last_sent,
                &self.last_observed[..len.min(self.last_observed.len())],
                &self.previous_observed[..len.min(self.previous_observed.len())],
            );
            out.extend_filled(sent.len().min(last.len()).min(previous.len()), |out| {
                for (((o, s), o1), o2) in out.iter_mut().zip(sent).zip(last).zip(previous) {
                    *o = s + 0.5 * (o1 - o2);
                }
            });
        }
        Ok(())
    }

    fn commit(&mut self, _ctx: &CallContext, reconstruction: &[f32]) -> SdkResult<()> {
        ensure_len("reconstruction", reconstruction.len(), self.len as u64)?;
        self.last_sent.clear();
        self.last_sent.extend_from_slice(reconstruction);
        Ok(())
    }

    fn observe(&mut self, _ctx: &CallContext, received: &[f32]) -> SdkResult<()> {
        ensure_len("received", received.len(), self.len as u64)?;
        std::mem::swap(&mut self.previous_observed, &mut self.last_observed);
        self.last_observed.clear();
        self.last_observed.extend_from_slice(received);
        Ok(())
    }

    fn save_state(&self, out: &mut Vec<u8>) -> SdkResult<()> {
        state::write_vectors(
            b"RES1",
            &[
                &self.last_sent,
                &self.previous_observed,
                &self.last_observed,
            ],
            out,
        );
        Ok(())
    }

    fn load_state(&mut self, bytes: &[u8]) -> SdkResult<()> {
        let [sent, previous, last] = state::read_exact(b"RES1", bytes, self.len)?;
        if !previous.is_empty() && last.is_empty() {
            return Err(corrupt("state: O[-2] present without O[-1]"));
        }
        self.last_sent = sent;
        self.previous_observed = previous;
        self.last_observed = last;
        Ok(())
    }

    fn reset(&mut self) {
        self.last_sent.clear();
        self.previous_observed.clear();
        self.last_observed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predict(stage: &mut Res1) -> Vec<f32> {
        let mut out = RVec::new();
        stage.predict(&CallContext::new(0, 0), &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn follows_the_res1_rule_with_its_fallbacks() {
        let tensor = TensorSpec::new("t", &[2]);
        let ctx = CallContext::new(0, 0);
        let mut res1 = Res1::new(Res1Config {}, &tensor).unwrap();
        assert_eq!(predict(&mut res1), vec![0.0, 0.0]);
        // Observations alone do not make a prediction before a commit.
        res1.observe(&ctx, &[5.0, 5.0]).unwrap();
        assert_eq!(predict(&mut res1), vec![0.0, 0.0]);
        res1.commit(&ctx, &[1.0, 2.0]).unwrap();
        // One observation: Res-0.
        assert_eq!(predict(&mut res1), vec![1.0, 2.0]);
        res1.observe(&ctx, &[7.0, 4.0]).unwrap();
        // S[-1] + (O[-1] - O[-2]) / 2 = [1 + 1, 2 - 0.5].
        assert_eq!(predict(&mut res1), vec![2.0, 1.5]);
        res1.observe(&ctx, &[7.0, 8.0]).unwrap();
        res1.commit(&ctx, &[0.0, 0.0]).unwrap();
        assert_eq!(predict(&mut res1), vec![0.0, 2.0]);
        let mut saved = Vec::new();
        res1.save_state(&mut saved).unwrap();
        let mut other = Res1::new(Res1Config {}, &tensor).unwrap();
        other.load_state(&saved).unwrap();
        assert_eq!(predict(&mut other), vec![0.0, 2.0]);
        res1.reset();
        assert_eq!(predict(&mut res1), vec![0.0, 0.0]);
    }
}
