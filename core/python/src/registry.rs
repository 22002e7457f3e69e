//! The process-wide registry: every shipped plugin linked in as a built-in, then
//! the libraries named by `GRADCODEC_PLUGIN_PATH`, then those added with
//! `gradcodec.load_plugins(path)`. Earlier registrations take precedence for the
//! same kind, name and version (pin `name@version` in a spec to choose).

use crate::errors::PluginError;
use gradcodec::abi::PluginRootRef;
use gradcodec::{LoadedLibrary, PluginSearch, Registry};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;
use std::sync::{OnceLock, RwLock};

/// Where the built-in libraries say they come from.
pub const BUILT_IN: &str = "<built-in>";

fn built_in_roots() -> Vec<PluginRootRef> {
    vec![
        gradcodec_plugin_quantizers::plugin_root(),
        gradcodec_plugin_sparsifiers::plugin_root(),
        gradcodec_plugin_entropy_coders::plugin_root(),
        gradcodec_plugin_feedback::plugin_root(),
        gradcodec_plugin_predictors::plugin_root(),
        gradcodec_plugin_co3::plugin_root(),
        gradcodec_plugin_lloyd_max::plugin_root(),
    ]
}

struct State {
    registry: Registry,
    /// (file, why) of every library that failed to load from the environment.
    env_failures: Vec<(String, String)>,
}

fn state() -> &'static RwLock<State> {
    static STATE: OnceLock<RwLock<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut registry = Registry::default();
        for root in built_in_roots() {
            registry.add_library(LoadedLibrary {
                path: PathBuf::from(BUILT_IN),
                root,
                manifest: (root.manifest())(),
            });
        }
        registry.add_searched(PathBuf::from("the built-in plugins"));
        let search = PluginSearch {
            use_env: true,
            ..PluginSearch::default()
        };
        for dir in search.directories() {
            registry.add_searched(dir);
        }
        let mut env_failures = Vec::new();
        if let Ok(found) = Registry::discover(&search) {
            for library in found.libraries() {
                registry.add_library((**library).clone());
            }
            env_failures = found
                .failures()
                .iter()
                .map(|f| (f.path.display().to_string(), f.message.clone()))
                .collect();
        }
        RwLock::new(State {
            registry,
            env_failures,
        })
    })
}

/// Runs `f` on the registry (a read lock; writers only append whole
/// libraries, so a poisoned lock still holds a consistent registry).
pub fn with_registry<R>(f: impl FnOnce(&Registry) -> R) -> R {
    let guard = state()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&guard.registry)
}

/// Loads the plugin libraries at `path` (a library file, or a folder whose
/// `libgradcodec_plugin_*` files are loaded) into the process registry. All or
/// nothing: if any candidate fails, none is added and the error lists why.
/// Returns the names of the libraries added.
#[pyfunction]
pub fn load_plugins(py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
    let search = if path.is_dir() {
        PluginSearch::only(vec![path.clone()], Vec::new())
    } else if path.exists() {
        PluginSearch::only(Vec::new(), vec![path.clone()])
    } else {
        return Err(PluginError::new_err(format!(
            "{}: no such plugin file or folder",
            path.display()
        )));
    };
    let found = py
        .detach(|| Registry::discover(&search))
        .map_err(crate::errors::to_py)?;
    if !found.failures().is_empty() {
        let reasons: Vec<String> = found
            .failures()
            .iter()
            .map(|f| format!("cannot load plugin {}: {}", f.path.display(), f.message))
            .collect();
        return Err(PluginError::new_err(reasons.join("; ")));
    }
    if found.libraries().is_empty() {
        return Err(PluginError::new_err(format!(
            "{}: no plugin library found (files are named libgradcodec_plugin_*.so)",
            path.display()
        )));
    }
    let mut guard = state()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.registry.add_searched(path);
    let mut names = Vec::new();
    for library in found.libraries() {
        names.push(library.manifest.library.to_string());
        guard.registry.add_library((**library).clone());
    }
    Ok(names)
}

/// Every registered stage, in precedence order: one dict per stage with kind,
/// name, version, format_version, flags, library, library_version, path, doc,
/// params_schema and example_params (both JSON text).
#[pyfunction]
pub fn stages(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    with_registry(|registry| -> PyResult<()> {
        for stage in registry.stages() {
            let d = &stage.descriptor;
            let item = PyDict::new(py);
            item.set_item("kind", d.kind.as_str())?;
            item.set_item("name", d.name.as_str())?;
            item.set_item("version", d.version)?;
            item.set_item("format_version", d.format_version)?;
            item.set_item("flags", d.flags.names())?;
            item.set_item("library", stage.library.manifest.library.as_str())?;
            item.set_item(
                "library_version",
                stage.library.manifest.library_version.as_str(),
            )?;
            item.set_item("path", stage.library.path.display().to_string())?;
            item.set_item("doc", d.doc.as_str())?;
            item.set_item("params_schema", d.params_schema.as_str())?;
            item.set_item("example_params", d.example_params.as_str())?;
            list.append(item)?;
        }
        Ok(())
    })?;
    Ok(list)
}

/// Libraries named by `GRADCODEC_PLUGIN_PATH` that failed to load: (file, why).
#[pyfunction]
pub fn plugin_failures() -> Vec<(String, String)> {
    state()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .env_failures
        .clone()
}
