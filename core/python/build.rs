//! Embeds the shipped pipeline specs (`pipelines/*.yaml` of the repository) so
//! `gradcodec.pipeline("co3-fp4")` works from an installed package.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut specs: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let absolute = path.canonicalize().unwrap();
            println!("cargo:rerun-if-changed={}", absolute.display());
            (name, absolute.display().to_string())
        })
        .collect();
    specs.sort();
    let mut code = String::from("/// The shipped specs: (name, YAML text), sorted by name.\n");
    code.push_str("pub const SHIPPED: &[(&str, &str)] = &[\n");
    for (name, path) in &specs {
        code.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shipped_pipelines.rs");
    std::fs::write(out, code).unwrap();
}
