//! `gradcodec check`: parse and resolve specs, then run each pipeline on a
//! sample update (three rounds, encode and decode), so stages that cannot work
//! together fail here with the stage's name, not on the first real update.

use crate::PluginArgs;
use clap::Args;
use gradcodec::trial::{trial_run, TRIAL_ROUNDS};
use gradcodec::PipelineSpec;
use std::io::IsTerminal;
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
    /// Only parse and resolve: skip the trial run on a sample update (a
    /// 96x128 matrix, a 128-vector and an 8-vector, three rounds).
    #[arg(long)]
    no_trial: bool,
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
        let outcome = PipelineSpec::from_file(file)
            .and_then(|spec| registry.build(&spec))
            .map_err(|error| error.to_string())
            .and_then(|pipeline| {
                if args.no_trial {
                    return Ok((pipeline, None));
                }
                let report = trial_run(&pipeline, TRIAL_ROUNDS)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                Ok((pipeline, Some(report)))
            });
        match outcome {
            Ok((pipeline, trial)) => {
                let trial = match trial {
                    Some(report) => format!(
                        ", trial: {} rounds of {} entries, {} bytes",
                        report.rounds,
                        report.entries,
                        report.message_bytes.iter().sum::<u64>()
                    ),
                    None => String::new(),
                };
                println!(
                    "ok    {}  ({}, fingerprint {:016x}{trial})",
                    file.display(),
                    crate::terminal::safe(pipeline.name()),
                    pipeline.fingerprint()
                );
                if args.canonical {
                    println!("{}", pipeline.embedded_json());
                }
            }
            Err(error) => {
                failed += 1;
                // The reason goes where the summary goes (stderr), and to stdout
                // beside the `ok` lines of the other specs; once when both are
                // the same terminal.
                let line = format!("FAIL  {}", crate::terminal::safe(&error));
                println!("{line}");
                if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
                    eprintln!("{line}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} specs failed", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
