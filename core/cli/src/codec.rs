//! `gradcodec encode` and `gradcodec decode`.

use crate::PluginArgs;
use anyhow::Context;
use clap::Args;
use gradcodec::{
    decoder_for_message, decoder_for_message_with_limits, metrics, ExpectedLayout, Limits,
    PipelineSpec, Update,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `encode`.
#[derive(Args)]
pub struct EncodeArgs {
    /// Pipeline spec (YAML).
    #[arg(long)]
    pipeline: PathBuf,
    /// Update to encode (.npy or .safetensors, f32).
    #[arg(long)]
    input: PathBuf,
    /// Message file to write.
    #[arg(long)]
    output: PathBuf,
}

/// Options of `decode`.
#[derive(Args)]
pub struct DecodeArgs {
    /// Message file.
    #[arg(long)]
    input: PathBuf,
    /// Update to write (.npy for one tensor, or .safetensors).
    #[arg(long)]
    output: PathBuf,
    /// Accept only the tensors (names and shapes) of this .npy / .safetensors
    /// file, e.g. the model the update is for; checked before decoding.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Accept updates of up to this many entries (default 2^26 = 67108864;
    /// raising it lets a message make the decoder allocate more).
    #[arg(long, value_name = "N")]
    max_entries: Option<u64>,
}

pub fn encode(plugin_args: &PluginArgs, args: &EncodeArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    let pipeline = registry.build(&PipelineSpec::from_file(&args.pipeline)?)?;
    let update = Update::read(&args.input)?;
    let mut encoder = pipeline.encoder();
    let message = encoder.encode(&update)?;
    std::fs::write(&args.output, &message)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let entries = update.entries() as u64;
    eprintln!(
        "{}: {} tensors, {entries} entries -> {} bytes ({:.4} bits per entry, relative MSE {:.3e})",
        pipeline.name(),
        update.tensors.len(),
        message.len(),
        metrics::bits_per_entry(message.len() as u64, entries),
        metrics::relative_mse(&update, encoder.try_last_reconstruction()?),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn decode(plugin_args: &PluginArgs, args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    let message =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let mut decoder = match args.max_entries {
        Some(entries) => decoder_for_message_with_limits(
            &registry,
            &message,
            &Limits::with_max_entries(entries),
        )?,
        None => decoder_for_message(&registry, &message)?,
    };
    if let Some(entries) = args.max_entries {
        decoder.set_limits(Limits::with_max_entries(entries));
    }
    if let Some(expected) = &args.expect {
        decoder.set_expected_layout(ExpectedLayout::of(&Update::read(expected)?));
    }
    let update = decoder.decode(&message)?;
    update.write(&args.output)?;
    eprintln!(
        "{}: {} tensors, {} entries written to {}",
        crate::terminal::safe(decoder.pipeline().name()),
        update.tensors.len(),
        update.entries(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
