//! `gradcodec inspect`: what a message holds.

use crate::terminal::safe;
use crate::PluginArgs;
use anyhow::Context;
use clap::Args;
use gradcodec::{report, CanonicalPipeline};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Message file.
    message: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(plugin_args: &PluginArgs, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.message)
        .with_context(|| format!("reading {}", args.message.display()))?;
    let parsed = gradcodec::container::parse(&bytes, &gradcodec::container::Limits::default())?;
    // Summaries need the stages; without them the report still shows sizes.
    let pipeline = parsed.pipeline_json.and_then(|json| {
        let canonical = CanonicalPipeline::parse(json).ok()?;
        plugin_args
            .registry()
            .ok()?
            .build_canonical(&canonical)
            .ok()
    });
    let report = report::describe(&bytes, pipeline.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "message: {} bytes, {:.4} bits per entry, container v{}, round {}, fingerprint {}",
        report.bytes,
        report.bits_per_entry,
        report.format_version,
        report.round,
        report.fingerprint
    );
    match &report.pipeline {
        Some(pipeline) => println!("pipeline: {}", safe(&pipeline.to_string())),
        None => println!("pipeline: not embedded (fingerprint only)"),
    }
    println!("header and tables: {} bytes", report.header_bytes);
    for tensor in &report.tensors {
        let streams: Vec<String> = tensor
            .streams
            .iter()
            .map(|s| format!("{} symbols/{} B", s.symbols, s.bytes))
            .collect();
        println!(
            "  {:<24} {:?} {:<5} side {} B, streams [{}], {:.4} bits/entry",
            safe(&tensor.name),
            tensor.shape,
            tensor.mode,
            tensor.side_info_bytes,
            streams.join(", "),
            tensor.payload_bits_per_entry
        );
        if let Some(summary) = &tensor.side_info {
            println!("    side info: {}", safe(&summary.to_string()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
