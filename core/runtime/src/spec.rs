//! YAML pipeline specs.
//!
//! ```yaml
//! name: co3-fp4
//! about: CO3 - fp4 conversion, GenNorm Huffman coding, error feedback with decay 0.7
//! stages:
//!   - error-correction: { use: memory-decay, params: { gamma: 0.7 } }
//!   - quantizer:        { use: float-convert, params: { format: fp4 } }
//!   - entropy-coder:    { use: elias-gamma, roles: [positions] }
//!   - entropy-coder:    { use: huffman@1, params: { model: parametric } }
//! uncompressed: { below_entries: 256 }
//! blocks: { entries: 1048576 }  # bigger tensors code as parallel blocks (the default)
//! meant_for: any          # or dsgd / fedavg: advisory, not fingerprinted
//! ```
//!
//! Stage order is canonical (predictor, error-correction, quantizer,
//! entropy-coder); a pipeline has at most one predictor and one error
//! correction, exactly one quantizer, and one or more entropy coders: each
//! symbol stream uses the first coder whose `roles` list its role, or the first
//! coder without `roles`. `use: name@version` pins a stage version. Unknown keys
//! are errors; every error names the file, and the line where it can.

use crate::error::{Error, Result};
use gradcodec_abi::{StageKind, StreamRole};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: String,
    #[serde(default)]
    about: String,
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    stages: Vec<StageEntry>,
    #[serde(default)]
    uncompressed: Option<UncompressedRule>,
    #[serde(default)]
    blocks: Option<BlockRule>,
    #[serde(default)]
    meant_for: MeantFor,
}

/// How big tensors are cut into blocks (spec key `blocks`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockRule {
    /// Tensors of more entries are coded as blocks of whole rows of about
    /// this many entries, in parallel.
    pub entries: u64,
}

/// The kind of update a pipeline was designed for (spec key `meant_for`).
/// Advisory: it is not part of the canonical pipeline or the fingerprint, and
/// messages do not carry it; the training harness warns when a pipeline runs
/// in the other mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeantFor {
    /// Any update (the default).
    #[default]
    Any,
    /// Per-step gradients of distributed SGD (e.g. DGC's momentum correction,
    /// PowerSGD's warm start).
    Dsgd,
    /// FedAvg's model deltas or models (e.g. ResFed's predictors).
    Fedavg,
}

impl MeantFor {
    /// `any`, `dsgd` or `fedavg`.
    pub fn as_str(self) -> &'static str {
        match self {
            MeantFor::Any => "any",
            MeantFor::Dsgd => "dsgd",
            MeantFor::Fedavg => "fedavg",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum StageEntry {
    Predictor(StageUse),
    ErrorCorrection(StageUse),
    Quantizer(StageUse),
    EntropyCoder(StageUse),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageUse {
    #[serde(rename = "use")]
    stage: String,
    #[serde(default)]
    params: Option<serde_yaml::Value>,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// Tensors left uncompressed (sent as raw f32).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UncompressedRule {
    /// Tensors with fewer entries than this are sent raw.
    pub below_entries: u64,
}

/// One stage of a parsed spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecStage {
    /// Stage kind.
    pub kind: StageKind,
    /// Stage name.
    pub name: String,
    /// Pinned version (`name@version`), if any.
    pub version: Option<u32>,
    /// Parameters as JSON text (`{}` when none were given).
    pub params_json: String,
    /// Stream roles this entropy coder handles (empty: the default coder).
    pub roles: Vec<StreamRole>,
    /// 1-based line of the stage entry in the spec file (0 if unknown).
    pub line: usize,
}

/// A parsed and structurally validated pipeline spec.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    /// Where it came from (for messages).
    pub origin: String,
    /// Pipeline name.
    pub name: String,
    /// One line on what it is and where it comes from.
    pub about: String,
    /// Stages in canonical order.
    pub stages: Vec<SpecStage>,
    /// Tensors with fewer entries are sent raw.
    pub uncompressed_below: u64,
    /// Block size (`blocks: { entries }`); `None`: the format's default.
    pub block_entries: Option<u64>,
    /// What kind of update the pipeline was designed for.
    pub meant_for: MeantFor,
}

/// Parses a role name.
pub fn parse_role(text: &str) -> Option<StreamRole> {
    [
        StreamRole::VALUES,
        StreamRole::POSITIONS,
        StreamRole::RAW_WORDS,
    ]
    .into_iter()
    .find(|role| role.as_str() == text)
}

impl PipelineSpec {
    /// Reads and parses a spec file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if metadata.len() > 1 << 20 {
            return Err(Error::Spec(format!(
                "{}: spec larger than 1 MiB",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses spec text; `origin` names it in errors (a file path).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        check_nesting(text).map_err(|message| Error::Spec(format!("{origin}: {message}")))?;
        let file: SpecFile = serde_yaml::from_str(text).map_err(|err| {
            let location = err.location();
            let message = err.to_string();
            // serde_yaml names the path of the field first (`stages[1]: ...`).
            let field = message
                .split_once(": ")
                .map(|(head, _)| head)
                .filter(|head| !head.contains(' '))
                .map(str::to_string);
            Error::SpecAt {
                origin: origin.to_string(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                field,
                message,
            }
        })?;
        let lines = stage_lines(text);
        let mut stages = Vec::with_capacity(file.stages.len());
        for (index, entry) in file.stages.into_iter().enumerate() {
            let line = lines.get(index).copied().unwrap_or(0);
            stages.push(convert_stage(entry, origin, line)?);
        }
        let spec = Self {
            origin: origin.to_string(),
            name: file.name,
            about: file.about,
            stages,
            uncompressed_below: file.uncompressed.unwrap_or_default().below_entries,
            block_entries: file.blocks.map(|rule| rule.entries),
            meant_for: file.meant_for,
        };
        spec.validate_structure()?;
        Ok(spec)
    }

    /// `origin:line` of a stage, for messages.
    pub fn place(&self, stage: &SpecStage) -> String {
        if stage.line > 0 {
            format!("{}:{}", self.origin, stage.line)
        } else {
            self.origin.clone()
        }
    }

    fn validate_structure(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::Spec(format!(
                "{}: `name` must not be empty",
                self.origin
            )));
        }
        if let Some(entries) = self.block_entries {
            if entries < crate::engine::MIN_BLOCK_ENTRIES {
                return Err(Error::SpecAt {
                    origin: self.origin.clone(),
                    line: None,
                    column: None,
                    field: Some("blocks.entries".into()),
                    message: format!(
                        "`blocks: {{ entries: {entries} }}` is below the minimum of {}",
                        crate::engine::MIN_BLOCK_ENTRIES
                    ),
                });
            }
        }
        let shapes: Vec<StageShape<'_>> = self
            .stages
            .iter()
            .map(|s| StageShape {
                kind: s.kind,
                name: &s.name,
                has_roles: !s.roles.is_empty(),
            })
            .collect();
        check_structure(&shapes).map_err(|(at, message)| {
            let place = at.map_or_else(|| self.origin.clone(), |i| self.place(&self.stages[i]));
            Error::Spec(format!("{place}: {message}"))
        })
    }
}

/// The deepest nesting of flow collections (`[`, `{`) a spec may have; the
/// deepest real one has 2. Checked by a linear scan before the YAML parser runs,
/// whose time grows with the square of the depth.
pub const MAX_NESTING: usize = 32;

/// Refuses text whose `[`/`{` nesting (outside quotes and comments) or
/// indentation is deeper than [`MAX_NESTING`] allows.
fn check_nesting(text: &str) -> std::result::Result<(), String> {
    let mut depth = 0usize;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        // Block nesting costs the parser like flow nesting; 2 spaces a level.
        if indent > 2 * MAX_NESTING + 64 {
            return Err(format!(
                "line {}: indented {indent} columns, deeper than a spec may nest",
                number + 1
            ));
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in line.chars() {
            match quote {
                Some('\'') if c == '\'' => quote = None,
                Some('"') if c == '"' && previous != '\\' => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if previous == ' ' || previous == '\t' => break,
                    '\'' | '"' => quote = Some(c),
                    '[' | '{' => {
                        depth += 1;
                        if depth > MAX_NESTING {
                            return Err(format!(
                                "line {}: `[`/`{{` nested more than {MAX_NESTING} deep",
                                number + 1
                            ));
                        }
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            previous = c;
        }
    }
    Ok(())
}

/// The most stages a pipeline may have (every shipped one has at most 5).
pub const MAX_STAGES: usize = 16;

/// What the structural rules look at in a stage.
pub(crate) struct StageShape<'a> {
    pub kind: StageKind,
    pub name: &'a str,
    pub has_roles: bool,
}

/// The structural rules every pipeline obeys, from a YAML spec or embedded in a
/// message: at most [`MAX_STAGES`] stages in canonical order, at most one
/// predictor and one error correction, exactly one quantizer, at least one
/// entropy coder, `roles` on coders only, and no coder after one without roles.
/// On failure: the offending stage's index (if one) and the message.
pub(crate) fn check_structure(
    stages: &[StageShape<'_>],
) -> std::result::Result<(), (Option<usize>, String)> {
    if stages.len() > MAX_STAGES {
        return Err((
            None,
            format!(
                "{} stages, more than the {MAX_STAGES} a pipeline may have",
                stages.len()
            ),
        ));
    }
    for (index, pair) in stages.windows(2).enumerate() {
        let (before, stage) = (&pair[0], &pair[1]);
        if stage.kind < before.kind {
            return Err((
                Some(index + 1),
                format!(
                    "{} `{}` comes after {} `{}`; stages must be in the order \
                     predictor, error-correction, quantizer, entropy-coder",
                    stage.kind, stage.name, before.kind, before.name
                ),
            ));
        }
    }
    if let Some(index) = stages
        .iter()
        .position(|s| s.kind != StageKind::ENTROPY_CODER && s.has_roles)
    {
        return Err((Some(index), "`roles` applies to entropy coders only".into()));
    }
    let count = |kind| stages.iter().filter(|s| s.kind == kind).count();
    for kind in [StageKind::PREDICTOR, StageKind::ERROR_CORRECTION] {
        if count(kind) > 1 {
            return Err((None, format!("more than one {kind} stage")));
        }
    }
    if count(StageKind::QUANTIZER) != 1 {
        return Err((
            None,
            "a pipeline needs exactly one quantizer (use `raw` for none)".into(),
        ));
    }
    if count(StageKind::ENTROPY_CODER) == 0 {
        return Err((
            None,
            "a pipeline needs at least one entropy-coder (use `bitpack` for plain packing)".into(),
        ));
    }
    let coders: Vec<usize> = stages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == StageKind::ENTROPY_CODER)
        .map(|(i, _)| i)
        .collect();
    if let Some(default_at) = coders.iter().position(|&i| !stages[i].has_roles) {
        if let Some(&after) = coders.get(default_at + 1) {
            return Err((
                Some(after),
                "this entropy-coder can never be used: an earlier one without `roles` \
                 already takes every stream"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Where in `value` a non-finite float is (`.inf`, `.nan`), as `.key[index]`;
/// JSON has none, so it would otherwise turn into a confusing `null`.
fn non_finite_number(value: &serde_yaml::Value, path: String) -> Option<String> {
    use serde_yaml::Value;
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => Some(path),
        Value::Mapping(map) => map.iter().find_map(|(key, v)| {
            let key = key
                .as_str()
                .map_or_else(|| format!("{key:?}"), str::to_string);
            non_finite_number(v, format!("{path}.{key}"))
        }),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite_number(v, format!("{path}[{i}]"))),
        Value::Tagged(tagged) => non_finite_number(&tagged.value, path),
        _ => None,
    }
}

fn convert_stage(entry: StageEntry, origin: &str, line: usize) -> Result<SpecStage> {
    let (kind, stage_use) = match entry {
        StageEntry::Predictor(u) => (StageKind::PREDICTOR, u),
        StageEntry::ErrorCorrection(u) => (StageKind::ERROR_CORRECTION, u),
        StageEntry::Quantizer(u) => (StageKind::QUANTIZER, u),
        StageEntry::EntropyCoder(u) => (StageKind::ENTROPY_CODER, u),
    };
    let place = if line > 0 {
        format!("{origin}:{line}")
    } else {
        origin.to_string()
    };
    let (name, version) = match stage_use.stage.split_once('@') {
        Some((name, version)) => {
            let version = version.parse::<u32>().map_err(|_| {
                Error::Spec(format!(
                    "{place}: {kind} `{}`: the version after `@` must be a number",
                    stage_use.stage
                ))
            })?;
            (name.to_string(), Some(version))
        }
        None => (stage_use.stage.clone(), None),
    };
    if name.is_empty() {
        return Err(Error::Spec(format!(
            "{place}: {kind}: `use` must name a stage"
        )));
    }
    let params_json = match stage_use.params {
        None | Some(serde_yaml::Value::Null) => "{}".to_string(),
        Some(value @ serde_yaml::Value::Mapping(_)) => {
            if let Some(path) = non_finite_number(&value, String::new()) {
                return Err(Error::Spec(format!(
                    "{place}: {kind} `{name}`: `params{path}` is not a finite number \
                     (.inf and .nan have no meaning as parameters)"
                )));
            }
            let json: serde_json::Value = serde_json::to_value(&value)
                .map_err(|err| Error::Spec(format!("{place}: {kind} `{name}`: `params`: {err}")))?;
            json.to_string()
        }
        Some(_) => {
            return Err(Error::Spec(format!(
                "{place}: {kind} `{name}`: `params` must be a mapping"
            )))
        }
    };
    let mut roles = Vec::new();
    for role in stage_use.roles.unwrap_or_default() {
        roles.push(parse_role(&role).ok_or_else(|| {
            Error::Spec(format!(
                "{place}: {kind} `{name}`: unknown role `{role}` (expected values, positions or raw-words)"
            ))
        })?);
    }
    Ok(SpecStage {
        kind,
        name,
        version,
        params_json,
        roles,
        line,
    })
}

/// 1-based line numbers of the items of the top-level `stages:` list.
fn stage_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_stages = false;
    let mut item_indent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            in_stages = trimmed.starts_with("stages:");
            item_indent = None;
            continue;
        }
        if in_stages && trimmed.starts_with('-') && *item_indent.get_or_insert(indent) == indent {
            lines.push(index + 1);
        }
    }
    lines
}

/// Every `*.yaml` / `*.yml` file in `dir`, sorted.
pub fn spec_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: t\nabout: test\nstages:\n  - error-correction: { use: memory-decay, params: { gamma: 0.5 } }\n  - quantizer: { use: uniform@1, params: { bits: 4 } }\n  - entropy-coder: { use: bitpack, roles: [positions] }\n  - entropy-coder: { use: bitpack }\nuncompressed: { below_entries: 16 }\n";

    #[test]
    fn meant_for_is_optional_checked_and_not_fingerprinted() {
        assert_eq!(
            PipelineSpec::parse(GOOD, "g.yaml").unwrap().meant_for,
            MeantFor::Any
        );
        for (value, expected) in [
            ("dsgd", MeantFor::Dsgd),
            ("fedavg", MeantFor::Fedavg),
            ("any", MeantFor::Any),
        ] {
            let text = format!("{GOOD}meant_for: {value}\n");
            assert_eq!(
                PipelineSpec::parse(&text, "m.yaml").unwrap().meant_for,
                expected
            );
        }
        let err = PipelineSpec::parse(&format!("{GOOD}meant_for: training\n"), "m.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("meant_for") || err.contains("unknown variant"),
            "{err}"
        );
    }

    #[test]
    fn parses_a_good_spec_with_lines_versions_and_roles() {
        let spec = PipelineSpec::parse(GOOD, "good.yaml").unwrap();
        assert_eq!(spec.stages.len(), 4);
        assert_eq!(spec.stages[0].line, 4);
        assert_eq!(spec.stages[1].version, Some(1));
        assert_eq!(spec.stages[1].params_json, r#"{"bits":4}"#);
        assert_eq!(spec.stages[2].roles, vec![StreamRole::POSITIONS]);
        assert_eq!(spec.uncompressed_below, 16);
    }

    #[test]
    fn malformed_yaml_names_file_line_and_column() {
        let err = PipelineSpec::parse("name: t\nstages: [\n  - {", "bad.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:"), "{text}");
        assert!(text.matches(':').count() >= 3, "{text}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = GOOD.replace("about: test", "about: test\ncolour: red");
        let err = PipelineSpec::parse(&text, "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let text = GOOD.replace("use: bitpack }", "use: bitpack, parms: {} }");
        let err = PipelineSpec::parse(&text, "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("parms"), "{err}");
    }

    #[test]
    fn order_and_counts_are_checked() {
        let text = "name: t\nstages:\n  - quantizer: { use: raw }\n  - predictor: { use: last-sent }\n  - entropy-coder: { use: bitpack }\n";
        let err = PipelineSpec::parse(text, "o.yaml").unwrap_err().to_string();
        assert!(err.contains("o.yaml:4") && err.contains("order"), "{err}");
        let text = "name: t\nstages:\n  - quantizer: { use: raw }\n";
        assert!(PipelineSpec::parse(text, "c.yaml")
            .unwrap_err()
            .to_string()
            .contains("entropy-coder"));
        let text = "name: t\nstages:\n  - entropy-coder: { use: bitpack }\n";
        assert!(PipelineSpec::parse(text, "c.yaml")
            .unwrap_err()
            .to_string()
            .contains("quantizer"));
    }

    #[test]
    fn unreachable_coder_and_bad_role_are_errors() {
        let text = "name: t\nstages:\n  - quantizer: { use: raw }\n  - entropy-coder: { use: bitpack }\n  - entropy-coder: { use: zstd }\n";
        let err = PipelineSpec::parse(text, "u.yaml").unwrap_err().to_string();
        assert!(
            err.contains("u.yaml:5") && err.contains("never be used"),
            "{err}"
        );
        let text = GOOD.replace("roles: [positions]", "roles: [indices]");
        assert!(PipelineSpec::parse(&text, "r.yaml")
            .unwrap_err()
            .to_string()
            .contains("indices"));
        let text = GOOD.replace("uniform@1", "uniform@one");
        assert!(PipelineSpec::parse(&text, "v.yaml")
            .unwrap_err()
            .to_string()
            .contains("version"));
    }
}
