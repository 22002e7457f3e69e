//! `gradcodec-harness`: see `gradcodec-harness --help`.

use clap::Parser;

use gradcodec_harness::capture::capture;
use gradcodec_harness::cli::{Cli, Command, OutArgs};
use gradcodec_harness::models::{InputShape, Model, ModelKind};
use gradcodec_harness::sweep::{sweep, SweepEntry};
use gradcodec_harness::train::run::{run, RunOptions};

fn options(out: &OutArgs) -> RunOptions {
    RunOptions {
        out_dir: out.out.clone(),
        fresh: out.fresh,
        halt_after: out.halt_after,
        progress: !out.quiet,
        baseline: None,
        save_messages: out.save_messages,
    }
}

/// libtorch's OpenMP threads spin while they wait (OMP_WAIT_POLICY=ACTIVE by
/// default). On a machine whose cores are shared, a spinning thread steals the
/// core of the one it waits for, and training slows down by 5-30x (measured:
/// LeNet-5 rounds of 4 s took 60-90 s next to one other busy process). libgomp
/// reads the policy when it is loaded, before `main`, so when it is unset the
/// harness re-executes itself once with OMP_WAIT_POLICY=PASSIVE. Results are
/// identical; only the waiting changes.
fn ensure_passive_omp() {
    #[cfg(unix)]
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OMP_WAIT_POLICY", "PASSIVE")
                .exec();
            eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE: {err}");
        }
    }
}

fn main() -> std::process::ExitCode {
    ensure_passive_omp();
    match run_cli(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", gradcodec_harness::error_text(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train {
            run: args,
            uplink,
            baseline,
            out,
        } => {
            let mut cfg = args.to_config()?;
            if uplink.is_some() {
                cfg.uplink = uplink;
            }
            let mut opts = options(&out);
            opts.baseline = baseline;
            let result = run(&cfg, None, &opts)?;
            match result.summary {
                Some(s) => {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                    eprintln!("outputs in {}", result.dir.display());
                }
                None => eprintln!(
                    "stopped after round {} (resume with the same command)",
                    result.records.last().map_or(0, |r| r.round)
                ),
            }
        }
        Command::Sweep {
            run: args,
            pipelines,
            baseline,
            out,
        } => {
            let cfg = args.to_config()?;
            let entries: Vec<SweepEntry> = pipelines.iter().map(|p| SweepEntry::parse(p)).collect();
            let result = sweep(&cfg, &entries, baseline.as_deref(), None, &options(&out))?;
            println!("{}", result.table);
            eprintln!(
                "table: {}\nplot:  {}",
                result.dir.join("comparison.md").display(),
                result.dir.join("comparison.png").display()
            );
        }
        Command::Capture {
            run: args,
            what,
            warmup,
            steps,
            output,
        } => {
            let cfg = args.to_config()?;
            capture(&cfg, what, warmup, steps, &output)?;
        }
        Command::Aggregate {
            dir,
            baseline,
            target_accuracy,
            about,
        } => {
            let (table, written) =
                gradcodec_harness::seeds::report(&dir, &baseline, target_accuracy, &about)?;
            println!("{table}");
            for path in written {
                println!("wrote {}", path.display());
            }
        }
        Command::Models => {
            println!("{:<12} {:>14} {:>14}", "model", "1x28x28", "3x32x32");
            for kind in ModelKind::ALL {
                let count = |c, side| {
                    let input = InputShape {
                        channels: c,
                        height: side,
                        width: side,
                        classes: 10,
                    };
                    Model::new(kind, input, tch::Device::Cpu)
                        .map(|m| m.trainable_parameters().to_string())
                        .unwrap_or_else(|e| e)
                };
                println!(
                    "{:<12} {:>14} {:>14}",
                    kind.name(),
                    count(1, 28),
                    count(3, 32)
                );
            }
        }
    }
    Ok(())
}
