//! Splitting the training set among K clients, seeded.
//!
//! - IID: a random permutation cut into K near-equal parts.
//! - `classes:c`: ResFed's non-IID rule, client i holds the classes
//!   `{(i + j) mod C : j < c}`; each class's examples are shared evenly among the
//!   clients that hold it.
//! - `dirichlet:α`: for each class, client shares drawn from Dirichlet(α, …, α)
//!   (as normalized Gamma(α) draws); redrawn (up to 100 times) until every client
//!   has at least one example.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

/// How the training set is split among clients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Partition {
    /// Independent and identically distributed.
    Iid,
    /// Client i gets classes `{(i + j) mod C : j < per_client}`.
    Classes {
        /// Classes per client (c).
        per_client: usize,
    },
    /// Per-class Dirichlet(α) shares.
    Dirichlet {
        /// Concentration α (> 0; small is more skewed).
        alpha: f64,
    },
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Classes { per_client } => write!(f, "classes:{per_client}"),
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
        }
    }
}

impl FromStr for Partition {
    type Err = String;

    /// Parses `iid`, `classes:C` or `dirichlet:ALPHA`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match (kind, arg) {
            ("iid", "") => Ok(Partition::Iid),
            ("classes", a) => a
                .parse()
                .map(|per_client| Partition::Classes { per_client })
                .map_err(|_| format!("partition {s:?}: classes:C needs an integer C")),
            ("dirichlet", a) => a
                .parse()
                .map(|alpha| Partition::Dirichlet { alpha })
                .map_err(|_| format!("partition {s:?}: dirichlet:ALPHA needs a number")),
            _ => Err(format!(
                "unknown partition {s:?}; expected iid, classes:C or dirichlet:ALPHA"
            )),
        }
    }
}

impl Partition {
    /// Checks the parameters against the number of classes.
    pub fn validate(&self, num_classes: usize) -> Result<(), String> {
        match *self {
            Partition::Iid => Ok(()),
            Partition::Classes { per_client } if per_client == 0 || per_client > num_classes => {
                Err(format!(
                    "partition classes:{per_client}: classes per client must be in 1..={num_classes}"
                ))
            }
            Partition::Classes { .. } => Ok(()),
            Partition::Dirichlet { alpha } if !(alpha > 0.0 && alpha.is_finite()) => Err(format!(
                "partition dirichlet:{alpha}: alpha must be a positive number"
            )),
            Partition::Dirichlet { .. } => Ok(()),
        }
    }
}

/// Splits example indices (by their `labels`) among `clients`; each client's
/// indices come back sorted. Errors when a client would get no example.
pub fn split(
    labels: &[u8],
    num_classes: usize,
    clients: usize,
    partition: Partition,
    seed: u64,
) -> Result<Vec<Vec<usize>>, String> {
    if clients == 0 {
        return Err("cannot partition among 0 clients".into());
    }
    partition.validate(num_classes)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5041_5254_4954_494f);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if l >= num_classes {
            return Err(format!("label {l} out of range 0..{num_classes}"));
        }
        by_class[l].push(i);
    }
    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); clients];
    match partition {
        Partition::Iid => {
            let mut all: Vec<usize> = (0..labels.len()).collect();
            all.shuffle(&mut rng);
            for (k, chunk) in even_chunks(&all, clients).into_iter().enumerate() {
                parts[k].extend_from_slice(chunk);
            }
        }
        Partition::Classes { per_client } => {
            let mut holders: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
            for client in 0..clients {
                for j in 0..per_client {
                    holders[(client + j) % num_classes].push(client);
                }
            }
            for (class, idx) in by_class.iter_mut().enumerate() {
                if holders[class].is_empty() {
                    continue;
                }
                idx.shuffle(&mut rng);
                for (h, chunk) in even_chunks(idx, holders[class].len())
                    .into_iter()
                    .enumerate()
                {
                    parts[holders[class][h]].extend_from_slice(chunk);
                }
            }
        }
        Partition::Dirichlet { alpha } => {
            let gamma = Gamma::new(alpha, 1.0).map_err(|e| format!("dirichlet:{alpha}: {e}"))?;
            let mut ok = false;
            for _attempt in 0..100 {
                parts.iter_mut().for_each(Vec::clear);
                for idx in by_class.iter_mut() {
                    idx.shuffle(&mut rng);
                    let draws: Vec<f64> = (0..clients)
                        .map(|_| gamma.sample(&mut rng).max(1e-300))
                        .collect();
                    let total: f64 = draws.iter().sum();
                    let mut start = 0usize;
                    let mut acc = 0f64;
                    for (k, d) in draws.iter().enumerate() {
                        acc += d / total;
                        let end = if k + 1 == clients {
                            idx.len()
                        } else {
                            ((acc * idx.len() as f64).round() as usize).clamp(start, idx.len())
                        };
                        parts[k].extend_from_slice(&idx[start..end]);
                        start = end;
                    }
                }
                if parts.iter().all(|p| !p.is_empty()) {
                    ok = true;
                    break;
                }
                // Perturb the stream so the next attempt differs.
                let _: u64 = rng.random();
            }
            if !ok {
                return Err(format!(
                    "dirichlet:{alpha} left a client without examples in 100 draws; \
                     use a larger alpha or fewer clients"
                ));
            }
        }
    }
    for (k, p) in parts.iter_mut().enumerate() {
        if p.is_empty() {
            return Err(format!(
                "partition {partition} leaves client {k} without examples \
                 ({} examples, {clients} clients)",
                labels.len()
            ));
        }
        p.sort_unstable();
    }
    Ok(parts)
}

/// Cuts `items` into `n` consecutive parts whose sizes differ by at most one.
fn even_chunks<T>(items: &[T], n: usize) -> Vec<&[T]> {
    let base = items.len() / n;
    let extra = items.len() % n;
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for k in 0..n {
        let len = base + usize::from(k < extra);
        out.push(&items[start..start + len]);
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u8> {
        (0..1000).map(|i| (i % 10) as u8).collect()
    }

    fn covers_all_once(parts: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn iid_is_balanced_seeded_and_complete() {
        let l = labels();
        let a = split(&l, 10, 7, Partition::Iid, 1).unwrap();
        assert_eq!(a, split(&l, 10, 7, Partition::Iid, 1).unwrap());
        assert_ne!(a, split(&l, 10, 7, Partition::Iid, 2).unwrap());
        covers_all_once(&a, l.len());
        assert!(a.iter().all(|p| p.len() == 142 || p.len() == 143));
    }

    #[test]
    fn classes_follow_the_resfed_rule() {
        let l = labels();
        let parts = split(&l, 10, 10, Partition::Classes { per_client: 2 }, 3).unwrap();
        covers_all_once(&parts, l.len());
        for (i, p) in parts.iter().enumerate() {
            let mut classes: Vec<u8> = p.iter().map(|&j| l[j]).collect();
            classes.sort_unstable();
            classes.dedup();
            let mut want = vec![i as u8, ((i + 1) % 10) as u8];
            want.sort_unstable();
            assert_eq!(classes, want, "client {i}");
            assert_eq!(p.len(), 100);
        }
    }

    #[test]
    fn dirichlet_is_complete_and_skewed() {
        let l = labels();
        let parts = split(&l, 10, 5, Partition::Dirichlet { alpha: 0.1 }, 9).unwrap();
        covers_all_once(&parts, l.len());
        // With alpha = 0.1 some client holds less than half the classes in bulk.
        let skewed = parts.iter().any(|p| {
            let mut counts = [0usize; 10];
            p.iter().for_each(|&j| counts[l[j] as usize] += 1);
            counts.iter().filter(|&&c| c * 20 >= p.len()).count() <= 5
        });
        assert!(skewed);
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!("iid".parse::<Partition>().unwrap(), Partition::Iid);
        assert_eq!(
            "classes:2".parse::<Partition>().unwrap(),
            Partition::Classes { per_client: 2 }
        );
        assert!("shards:2".parse::<Partition>().is_err());
        assert!(split(&labels(), 10, 3, Partition::Classes { per_client: 0 }, 0).is_err());
        assert!(split(&labels(), 10, 0, Partition::Iid, 0).is_err());
    }
}
