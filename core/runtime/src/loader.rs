//! Plugin discovery and loading.
//!
//! Search order, highest precedence first: explicit files (`--plugin FILE`),
//! explicit directories (`--plugin-dir DIR`), the `GRADCODEC_PLUGIN_PATH`
//! variable (a path list), the directory of the executable (and its parent when
//! the executable sits in a cargo `deps/` folder), then the workspace's own build
//! output. Never the current directory. In directories only files named like
//! `libgradcodec_plugin_*.so` are opened.
//!
//! Each file is loaded with `lib_header_from_path` + `init_root_module` (never
//! `RootModule::load_from_*`, which caches the first library it loads). Libraries
//! are never unloaded. Per-file errors are collected, not fatal.

use abi_stable::library::{lib_header_from_path, LibraryError};
use gradcodec_abi::{PluginManifest, PluginRootRef, RootModuleLoadError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Environment variable with extra plugin directories (or files).
pub const PLUGIN_PATH_VAR: &str = "GRADCODEC_PLUGIN_PATH";

/// Where to look for plugin libraries.
#[derive(Clone, Debug, Default)]
pub struct PluginSearch {
    /// Explicit library files (highest precedence).
    pub files: Vec<PathBuf>,
    /// Explicit directories.
    pub dirs: Vec<PathBuf>,
    /// Read `GRADCODEC_PLUGIN_PATH`.
    pub use_env: bool,
    /// Look next to the executable.
    pub use_exe_dir: bool,
    /// Look in the workspace's build output (target/{debug,release}).
    pub use_build_dir: bool,
}

impl PluginSearch {
    /// The default search: environment, executable directory, build output.
    pub fn from_env() -> Self {
        Self {
            files: Vec::new(),
            dirs: Vec::new(),
            use_env: true,
            use_exe_dir: true,
            use_build_dir: true,
        }
    }

    /// Only the given directories and files (tests use this to be hermetic).
    pub fn only(dirs: Vec<PathBuf>, files: Vec<PathBuf>) -> Self {
        Self {
            files,
            dirs,
            ..Self::default()
        }
    }

    /// The directories searched, in precedence order (for messages).
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.dirs.clone();
        if self.use_env {
            if let Some(value) = std::env::var_os(PLUGIN_PATH_VAR) {
                dirs.extend(std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()));
            }
        }
        if self.use_exe_dir {
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
            {
                if dir.file_name().is_some_and(|name| name == "deps") {
                    if let Some(parent) = dir.parent() {
                        dirs.push(parent.to_path_buf());
                    }
                }
                dirs.push(dir);
            }
        }
        if self.use_build_dir {
            dirs.extend(build_output_dirs());
        }
        let mut seen = BTreeSet::new();
        dirs.retain(|dir| seen.insert(dir.clone()));
        dirs
    }

    /// Every candidate library file, in precedence order: explicit files, then
    /// each directory's `libgradcodec_plugin_*` files. The registry loads them in
    /// this order and skips a file whose name already loaded from an earlier
    /// place (a copy in a higher-precedence directory shadows it); a copy that
    /// fails to load shadows nothing.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut files = self.files.clone();
        for dir in self.directories() {
            if dir.is_file() {
                files.push(dir);
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| is_plugin_file_name(path))
                .collect();
            found.sort();
            files.extend(found);
        }
        let mut seen = BTreeSet::new();
        files.retain(|file| seen.insert(file.canonicalize().unwrap_or_else(|_| file.clone())));
        files
    }
}

/// True for `libgradcodec_plugin_*.so` (and the macOS / Windows spellings).
pub fn is_plugin_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name
        .strip_suffix(".so")
        .or_else(|| name.strip_suffix(".dylib"))
        .or_else(|| name.strip_suffix(".dll"));
    stem.is_some_and(|stem| {
        stem.strip_prefix("lib")
            .unwrap_or(stem)
            .starts_with("gradcodec_plugin_")
    })
}

/// The workspace build output directories, known at compile time.
fn build_output_dirs() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile))
        .collect()
}

/// A loaded plugin library.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The file it came from.
    pub path: PathBuf,
    /// Its root module.
    pub root: PluginRootRef,
    /// Its manifest.
    pub manifest: PluginManifest,
}

/// The largest plugin library file considered (bytes).
pub const MAX_PLUGIN_FILE_BYTES: u64 = 1 << 30;

/// Checks a plugin candidate before `dlopen`, which trusts the file: a regular
/// file (a FIFO would block `open` forever), at most [`MAX_PLUGIN_FILE_BYTES`],
/// a shared library of this host's format and architecture, and every loadable
/// segment inside the file (a truncated copy would be mapped past its end and
/// kill the process with SIGBUS on first access). The file can still change
/// between this check and the load; plugin folders are trusted (docs/security.md).
pub fn check_candidate(path: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| err.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_string());
    }
    if metadata.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(format!(
            "{} bytes, larger than the {} bytes a plugin library may have",
            metadata.len(),
            MAX_PLUGIN_FILE_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    check_library_bytes(&bytes)
}

/// The format checks of [`check_candidate`] on a library's bytes.
pub fn check_library_bytes(bytes: &[u8]) -> Result<(), String> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(bytes).map_err(|err| {
        if bytes.starts_with(b"\x7fELF") {
            format!("a truncated or damaged ELF file ({err})")
        } else {
            format!("not a shared library this host can load ({err})")
        }
    })?;
    let host = host_architecture();
    if Some(file.architecture()) != host {
        return Err(format!(
            "built for {:?}, this host is {}",
            file.architecture(),
            std::env::consts::ARCH
        ));
    }
    let expected_format = host_format();
    if file.format() != expected_format {
        return Err(format!(
            "a {:?} file, this host loads {expected_format:?} libraries",
            file.format()
        ));
    }
    if file.kind() != object::ObjectKind::Dynamic {
        return Err(format!("a {:?} object, not a shared library", file.kind()));
    }
    if let Some((phoff, phnum)) = elf_program_table(bytes) {
        // `object` reads e_phoff = 0 as "no program headers"; the dynamic
        // loader reads the table at offset 0, where the file controls entries
        // past the header (a 224-byte file passed and then crashed dlopen).
        if phnum != 0 && phoff == 0 {
            return Err("its program header table overlaps the ELF header (e_phoff 0)".into());
        }
    }
    if file.segments().next().is_none() {
        return Err("it has no loadable segment".to_string());
    }
    let length = bytes.len() as u64;
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if offset.checked_add(size).is_none_or(|end| end > length) {
            return Err(format!(
                "truncated: a loadable segment covers bytes {offset}..{} of a {length}-byte file",
                offset.saturating_add(size)
            ));
        }
    }
    Ok(())
}

/// e_phoff and e_phnum of an ELF file's header, as the dynamic loader reads them.
fn elf_program_table(bytes: &[u8]) -> Option<(u64, u16)> {
    if !bytes.starts_with(b"\x7fELF") || bytes.len() < 64 {
        return None;
    }
    let big = bytes[5] == 2;
    let u16_at = |at: usize| {
        let pair = [bytes[at], bytes[at + 1]];
        if big {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    let u64_at = |at: usize, len: usize| {
        let mut word = [0u8; 8];
        word[..len].copy_from_slice(&bytes[at..at + len]);
        if big {
            word[..len].reverse();
        }
        u64::from_le_bytes(word)
    };
    match bytes[4] {
        1 => Some((u64_at(28, 4), u16_at(44))),
        2 => Some((u64_at(32, 8), u16_at(56))),
        _ => None,
    }
}

fn host_architecture() -> Option<object::Architecture> {
    use object::Architecture as A;
    Some(match std::env::consts::ARCH {
        "x86_64" => A::X86_64,
        "x86" => A::I386,
        "aarch64" => A::Aarch64,
        "arm" => A::Arm,
        "riscv64" => A::Riscv64,
        "powerpc64" => A::PowerPc64,
        "s390x" => A::S390x,
        "loongarch64" => A::LoongArch64,
        _ => return None,
    })
}

fn host_format() -> object::BinaryFormat {
    if cfg!(target_os = "macos") {
        object::BinaryFormat::MachO
    } else if cfg!(windows) {
        object::BinaryFormat::Pe
    } else {
        object::BinaryFormat::Elf
    }
}

/// Loads one library file, checking the file (see [`check_candidate`]), the
/// ABI version and the layout.
pub fn load_library(path: &Path) -> Result<LoadedLibrary, String> {
    check_candidate(path)?;
    let header = lib_header_from_path(path).map_err(describe_library_error)?;
    // The ABI version rule (docs/abi.md: same major, the library's minor no newer
    // than the host's) and the layout of the root module of the library's minor.
    let root = gradcodec_abi::init_root_module(header).map_err(|error| match error {
        RootModuleLoadError::Version(message) => message,
        RootModuleLoadError::Library(error) => describe_library_error(error),
    })?;
    let manifest = (root.manifest())();
    gradcodec_abi::check_abi_version(manifest.abi_version.as_str())?;
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        root,
        manifest,
    })
}

fn describe_library_error(error: LibraryError) -> String {
    match error {
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "incompatible plugin ABI: the library was built against gradcodec-abi {actual_version}, \
             this host uses {expected_version}; rebuild the plugin against gradcodec-abi {expected_version}"
        ),
        LibraryError::AbiInstability(_) => format!(
            "incompatible plugin ABI: the library's root module layout differs from this host's \
             (gradcodec-abi {}); rebuild the plugin against it",
            gradcodec_abi::ABI_VERSION
        ),
        LibraryError::GetSymbolError { .. } => {
            "not a gradcodec plugin: it exports no abi_stable root module \
             (use gradcodec_sdk::export_plugin!)"
                .to_string()
        }
        other => other.to_string().trim().to_string(),
    }
}
