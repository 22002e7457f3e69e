//! `gradcodec plugins`: every stage of every library found; for entropy
//! coders, what they were found to accept (see `gradcodec::probe`).

use crate::PluginArgs;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

/// Options of `plugins`.
#[derive(Args)]
pub struct PluginsArgs {
    /// One JSON object per stage (JSON lines).
    #[arg(long)]
    json: bool,
    /// Also show directories searched, libraries that failed to load, and docs.
    #[arg(long)]
    verbose: bool,
}

pub fn run(plugin_args: &PluginArgs, args: &PluginsArgs) -> anyhow::Result<ExitCode> {
    let registry = plugin_args.registry()?;
    for stage in registry.stages() {
        let d = &stage.descriptor;
        let capabilities = gradcodec::probe::probe_coder(stage, &d.example_params);
        if args.json {
            let schema: serde_json::Value =
                serde_json::from_str(&d.params_schema).unwrap_or(serde_json::Value::Null);
            let example: serde_json::Value =
                serde_json::from_str(&d.example_params).unwrap_or(serde_json::Value::Null);
            let mut object = json!({
                "kind": d.kind.as_str(),
                "name": d.name.as_str(),
                "version": d.version,
                "format_version": d.format_version,
                "flags": d.flags.names(),
                "library": stage.library.manifest.library.as_str(),
                "library_version": stage.library.manifest.library_version.as_str(),
                "path": stage.library.path.display().to_string(),
                "doc": d.doc.as_str(),
            });
            if args.verbose {
                object["params_schema"] = schema;
                object["example_params"] = example;
            }
            if let Some(capabilities) = &capabilities {
                object["capabilities"] = serde_json::to_value(capabilities)?;
            }
            println!("{object}");
        } else {
            println!(
                "{:<17} {:<16} v{} (format {})  {:<22} {}",
                d.kind.as_str(),
                d.name.as_str(),
                d.version,
                d.format_version,
                d.flags.names().join(","),
                stage.library.path.display()
            );
            if let Some(capabilities) = &capabilities {
                println!("    takes: {}", capabilities.summary());
            }
            if args.verbose {
                println!("    {}", d.doc);
                println!("    example params: {}", d.example_params);
                if capabilities.is_some() {
                    println!(
                        "    (takes: found by coding probe streams with the example params; \
                         other params may take other streams: `gradcodec check` a pipeline)"
                    );
                }
            }
        }
    }
    if args.verbose {
        // Fused pairs (ABI 1.1): a quantizer and a coder in one pass.
        let fused = registry.fused_pairs();
        let enabled = gradcodec::fused::fused_enabled_by_default();
        for pair in &fused {
            let d = &pair.descriptor;
            if args.json {
                println!(
                    "{}",
                    json!({
                        "kind": "fused-pair",
                        "quantizer": d.quantizer.as_str(),
                        "quantizer_library": d.quantizer_library.as_str(),
                        "coder": d.coder.as_str(),
                        "coder_library": d.coder_library.as_str(),
                        "library": pair.library,
                        "path": pair.library_path.display().to_string(),
                        "doc": d.doc.as_str(),
                        "enabled": enabled,
                    })
                );
            } else {
                println!(
                    "{:<17} {} + {}  (by {}){}",
                    "fused-pair",
                    d.quantizer.as_str(),
                    d.coder.as_str(),
                    pair.library,
                    if enabled {
                        ""
                    } else {
                        "  [off: GRADCODEC_FUSED]"
                    }
                );
                println!("    {}", d.doc);
            }
        }
        if !args.json && !fused.is_empty() {
            println!(
                "    (fused pairs run in place of the two stages when a pipeline's configs match, \
                 with the same bytes; GRADCODEC_FUSED=off runs the stages)"
            );
        }
    }
    if args.verbose || registry.stages().is_empty() {
        eprintln!("searched:");
        for dir in registry.searched() {
            eprintln!("  {}", dir.display());
        }
        for failure in registry.failures() {
            eprintln!(
                "failed to load {}: {}",
                failure.path.display(),
                failure.message
            );
        }
    } else if !registry.failures().is_empty() {
        eprintln!(
            "{} librar{} failed to load (see --verbose)",
            registry.failures().len(),
            if registry.failures().len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
    }
    if registry.stages().is_empty() {
        eprintln!("no plugin found: build them (cargo build --workspace) or use --plugin-dir / GRADCODEC_PLUGIN_PATH");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
