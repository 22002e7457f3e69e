//! `gradcodec check`: parse and resolve specs, printing the canonical pipeline.

use crate::PluginArgs;
use clap::Args;
use gradcodec::PipelineSpec;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Spec files (YAML) or directories of them.
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    /// Print each canonical pipeline (JSON).
    #[arg(long)]
    canonical: bool,
}

pub fn run(plugin_args: &PluginArgs, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    let mut files = Vec::new();
    for path in &args.specs {
        if path.is_dir() {
            files.extend(gradcodec::spec::spec_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut failed = 0;
    for file in &files {
        let outcome = PipelineSpec::from_file(file).and_then(|spec| registry.build(&spec));
        match outcome {
            Ok(pipeline) => {
                println!(
                    "ok    {}  ({}, fingerprint {:016x})",
                    file.display(),
                    pipeline.name(),
                    pipeline.fingerprint()
                );
                if args.canonical {
                    println!("{}", pipeline.embedded_json());
                }
            }
            Err(error) => {
                failed += 1;
                // The reason goes where the summary goes (stderr), and to stdout
                // beside the `ok` lines of the other specs.
                let line = format!("FAIL  {}", crate::terminal::safe(&error.to_string()));
                println!("{line}");
                eprintln!("{line}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} specs failed", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
