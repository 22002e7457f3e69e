//! The models: an MLP, LeNet-5, the ResFed CNN and a small ResNet, built on a
//! tch `VarStore` with stable, sorted variable names (the tensor names of the
//! updates the codecs see).
//!
//! Every fully-connected layer is an [`aop::AopLinear`], so Mem-AOP-GD can be
//! switched on for the linear layers of any model.

pub mod aop;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Tensor};

use aop::{AopLinear, AopTape};

/// The model architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Flatten → 200 → 200 → classes, ReLU (the "2NN" of FedAvg).
    Mlp,
    /// LeNet-5: conv 6@5×5 (padded to 28×28 inputs' size), pool, conv 16@5×5, pool,
    /// 120, 84, classes.
    Lenet5,
    /// The ResFed CNN (1,020,160 parameters on 3×32×32 inputs).
    ResfedCnn,
    /// A small ResNet (ResNet-8: a stem and three basic blocks of 16, 32, 64
    /// channels, global average pooling).
    Resnet8,
}

impl ModelKind {
    /// Every model, for messages.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Mlp,
        ModelKind::Lenet5,
        ModelKind::ResfedCnn,
        ModelKind::Resnet8,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Lenet5 => "lenet5",
            ModelKind::ResfedCnn => "resfed-cnn",
            ModelKind::Resnet8 => "resnet8",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ModelKind::ALL.iter().map(|m| m.name()).collect();
                format!("unknown model {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Shape of the inputs and number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Channels.
    pub channels: i64,
    /// Height.
    pub height: i64,
    /// Width.
    pub width: i64,
    /// Output classes.
    pub classes: i64,
}

/// A network's layers.
enum Net {
    Mlp(Vec<AopLinear>),
    Lenet5 {
        conv1: nn::Conv2D,
        conv2: nn::Conv2D,
        fcs: Vec<AopLinear>,
    },
    ResfedCnn {
        con0: nn::Conv2D,
        convs: Vec<(nn::Conv2D, nn::BatchNorm, bool)>,
        fc: AopLinear,
    },
    Resnet8 {
        stem: (nn::Conv2D, nn::BatchNorm),
        blocks: Vec<BasicBlock>,
        fc: AopLinear,
    },
}

/// A ResNet basic block: two 3×3 convolutions with batch norm and a shortcut
/// (1×1 convolution + batch norm when the shape changes).
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let conv = |name: &str, i, o, k, s, pad| {
            nn::conv2d(
                p / name,
                i,
                o,
                k,
                nn::ConvConfig {
                    stride: s,
                    padding: pad,
                    bias: false,
                    ..Default::default()
                },
            )
        };
        let bn = |name: &str, c| nn::batch_norm2d(p / name, c, Default::default());
        BasicBlock {
            conv1: conv("conv1", c_in, c_out, 3, stride, 1),
            bn1: bn("bn1", c_out),
            conv2: conv("conv2", c_out, c_out, 3, 1, 1),
            bn2: bn("bn2", c_out),
            shortcut: (stride != 1 || c_in != c_out).then(|| {
                (
                    conv("shortcut_conv", c_in, c_out, 1, stride, 0),
                    bn("shortcut_bn", c_out),
                )
            }),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let short = match &self.shortcut {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

/// A model: its variables and its forward pass.
pub struct Model {
    /// The model kind.
    pub kind: ModelKind,
    /// The input shape it was built for.
    pub input: InputShape,
    /// The variables.
    pub vs: nn::VarStore,
    net: Net,
    tape: Rc<RefCell<Option<AopTape>>>,
    vars: Vec<(String, Tensor)>,
}

fn conv_out(size: i64, kernel: i64, pad: i64) -> i64 {
    size + 2 * pad - kernel + 1
}

impl Model {
    /// Builds a model with freshly initialized variables (from tch's global
    /// generator: call `tch::manual_seed` first for repeatable runs).
    pub fn new(kind: ModelKind, input: InputShape, device: Device) -> Result<Model, String> {
        let vs = nn::VarStore::new(device);
        let tape = Rc::new(RefCell::new(None));
        let root = vs.root();
        let InputShape {
            channels: c,
            height: h,
            width: w,
            classes,
        } = input;
        let net = match kind {
            ModelKind::Mlp => {
                let dims = [c * h * w, 200, 200, classes];
                Net::Mlp(
                    (0..3)
                        .map(|i| {
                            AopLinear::new(
                                &(&root / format!("fc{}", i + 1)),
                                dims[i],
                                dims[i + 1],
                                true,
                                &tape,
                            )
                        })
                        .collect(),
                )
            }
            ModelKind::Lenet5 => {
                let pad = if h < 32 || w < 32 { 2 } else { 0 };
                let conv1 = nn::conv2d(
                    &root / "conv1",
                    c,
                    6,
                    5,
                    nn::ConvConfig {
                        padding: pad,
                        ..Default::default()
                    },
                );
                let conv2 = nn::conv2d(&root / "conv2", 6, 16, 5, Default::default());
                let (h2, w2) = (
                    conv_out(conv_out(h, 5, pad) / 2, 5, 0) / 2,
                    conv_out(conv_out(w, 5, pad) / 2, 5, 0) / 2,
                );
                if h2 < 1 || w2 < 1 {
                    return Err(format!(
                        "lenet5 needs inputs of at least 12x12, got {h}x{w}"
                    ));
                }
                let dims = [16 * h2 * w2, 120, 84, classes];
                let fcs = (0..3)
                    .map(|i| {
                        AopLinear::new(
                            &(&root / format!("fc{}", i + 1)),
                            dims[i],
                            dims[i + 1],
                            true,
                            &tape,
                        )
                    })
                    .collect();
                Net::Lenet5 { conv1, conv2, fcs }
            }
            ModelKind::ResfedCnn => {
                // ResFed's CNN as its reference code actually builds it: the
                // OrderedDict there repeats the keys conv3/norm3/relu3, so the
                // 128→128 convolution is replaced in place by the 128→256 one.
                let con0 = nn::conv2d(
                    &root / "con0",
                    c,
                    32,
                    3,
                    nn::ConvConfig {
                        padding: 1,
                        ..Default::default()
                    },
                );
                let spec: [(&str, &str, i64, i64, bool); 4] = [
                    ("conv1", "norm1", 32, 64, true),
                    ("conv2", "norm2", 64, 128, false),
                    ("conv3", "norm3", 128, 256, true),
                    ("conv4", "norm4", 256, 256, true),
                ];
                let convs = spec
                    .iter()
                    .map(|&(cn, bn, i, o, pool)| {
                        (
                            nn::conv2d(
                                &root / cn,
                                i,
                                o,
                                3,
                                nn::ConvConfig {
                                    padding: 1,
                                    bias: false,
                                    ..Default::default()
                                },
                            ),
                            nn::batch_norm2d(&root / bn, o, Default::default()),
                            pool,
                        )
                    })
                    .collect();
                let (h3, w3) = (h / 8, w / 8);
                if h3 < 1 || w3 < 1 {
                    return Err(format!(
                        "resfed-cnn needs inputs of at least 8x8, got {h}x{w}"
                    ));
                }
                let fc = AopLinear::new(&(&root / "fc"), 256 * h3 * w3, classes, false, &tape);
                Net::ResfedCnn { con0, convs, fc }
            }
            ModelKind::Resnet8 => {
                let stem = (
                    nn::conv2d(
                        &root / "stem_conv",
                        c,
                        16,
                        3,
                        nn::ConvConfig {
                            padding: 1,
                            bias: false,
                            ..Default::default()
                        },
                    ),
                    nn::batch_norm2d(&root / "stem_bn", 16, Default::default()),
                );
                let blocks = vec![
                    BasicBlock::new(&(&root / "block1"), 16, 16, 1),
                    BasicBlock::new(&(&root / "block2"), 16, 32, 2),
                    BasicBlock::new(&(&root / "block3"), 32, 64, 2),
                ];
                let fc = AopLinear::new(&(&root / "fc"), 64, classes, true, &tape);
                Net::Resnet8 { stem, blocks, fc }
            }
        };
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Model {
            kind,
            input,
            vs,
            net,
            tape,
            vars,
        })
    }

    /// All variables (parameters and batch-norm statistics), sorted by name.
    pub fn variables(&self) -> &[(String, Tensor)] {
        &self.vars
    }

    /// Number of trainable parameters.
    pub fn trainable_parameters(&self) -> i64 {
        self.vars
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// Switches Mem-AOP recording of the linear layers on or off.
    pub fn set_aop(&self, on: bool) {
        *self.tape.borrow_mut() = on.then(AopTape::default);
    }

    /// The Mem-AOP tape (None when Mem-AOP is off).
    pub fn aop_tape(&self) -> std::cell::RefMut<'_, Option<AopTape>> {
        self.tape.borrow_mut()
    }

    /// Logits for a batch `N × C × H × W`.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        match &self.net {
            Net::Mlp(fcs) => {
                let mut x = xs.flatten(1, -1);
                for (i, fc) in fcs.iter().enumerate() {
                    x = fc.forward(&x, train);
                    if i + 1 < fcs.len() {
                        x = x.relu();
                    }
                }
                x
            }
            Net::Lenet5 { conv1, conv2, fcs } => {
                let mut x = xs
                    .apply(conv1)
                    .relu()
                    .max_pool2d_default(2)
                    .apply(conv2)
                    .relu()
                    .max_pool2d_default(2)
                    .flatten(1, -1);
                for (i, fc) in fcs.iter().enumerate() {
                    x = fc.forward(&x, train);
                    if i + 1 < fcs.len() {
                        x = x.relu();
                    }
                }
                x
            }
            Net::ResfedCnn { con0, convs, fc } => {
                let mut x = xs.apply(con0).relu();
                for (conv, bn, pool) in convs {
                    x = x.apply(conv).apply_t(bn, train).relu();
                    if *pool {
                        x = x.max_pool2d_default(2);
                    }
                }
                fc.forward(&x.flatten(1, -1), train)
            }
            Net::Resnet8 { stem, blocks, fc } => {
                let mut x = xs.apply(&stem.0).apply_t(&stem.1, train).relu();
                for b in blocks {
                    x = b.forward(&x, train);
                }
                let x = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
                fc.forward(&x, train)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(kind: ModelKind, c: i64, side: i64) -> i64 {
        let input = InputShape {
            channels: c,
            height: side,
            width: side,
            classes: 10,
        };
        let m = Model::new(kind, input, Device::Cpu).unwrap();
        let y = m.forward(
            &Tensor::zeros([2, c, side, side], (tch::Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(y.size(), vec![2, 10]);
        m.trainable_parameters()
    }

    #[test]
    fn parameter_counts() {
        assert_eq!(count(ModelKind::ResfedCnn, 3, 32), 1_020_160);
        assert_eq!(
            count(ModelKind::ResfedCnn, 1, 28),
            1_020_160 - 576 - 40_960 + 23_040
        );
        assert_eq!(count(ModelKind::Lenet5, 1, 28), 61_706);
        assert_eq!(count(ModelKind::Lenet5, 3, 32), 62_006);
        assert_eq!(
            count(ModelKind::Mlp, 1, 28),
            784 * 200 + 200 + 200 * 200 + 200 + 2010
        );
        assert!(count(ModelKind::Resnet8, 3, 32) > 70_000);
    }

    #[test]
    fn names_are_sorted_and_stable() {
        let input = InputShape {
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        };
        let m = Model::new(ModelKind::Lenet5, input, Device::Cpu).unwrap();
        let names: Vec<&str> = m.variables().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.bias",
                "conv1.weight",
                "conv2.bias",
                "conv2.weight",
                "fc1.bias",
                "fc1.weight",
                "fc2.bias",
                "fc2.weight",
                "fc3.bias",
                "fc3.weight"
            ]
        );
        assert!("vgg"
            .parse::<ModelKind>()
            .unwrap_err()
            .contains("unknown model"));
    }
}
