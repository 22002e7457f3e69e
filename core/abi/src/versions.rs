//! Which libraries a host loads: the version rule and the layout check per minor.

use crate::{v1_0, PluginRootRef, ABI_VERSION, ROOT_MODULE_FIELDS};
use abi_stable::{
    abi_stability::abi_checking::exported_check_layout_compatibility,
    library::{LibHeader, LibraryError},
    std_types::RBoxError,
    type_layout::{TLData, TypeLayout},
    StableAbi,
};
use std::fmt;

/// `major.minor.patch`, each a decimal number.
fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version
        .trim()
        .split('.')
        .map(|part| part.parse::<u64>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

/// Whether this host loads a library built against gradcodec-abi `plugin_version`:
/// the same major (1 or later) and a minor no newer than the host's; patch
/// levels never change the ABI. The error names both versions and says what to
/// rebuild.
pub fn check_abi_version(plugin_version: &str) -> Result<(), String> {
    let Some((major, minor, _)) = parse(ABI_VERSION) else {
        return Err(format!(
            "this host's ABI version `{ABI_VERSION}` is not a version number"
        ));
    };
    let range = if major == 0 {
        format!("gradcodec-abi {major}.{minor}")
    } else {
        format!("gradcodec-abi {major}.0 to {major}.{minor}")
    };
    match parse(plugin_version) {
        None => Err(format!(
            "incompatible plugin ABI: the library reports gradcodec-abi version `{plugin_version}`, \
             which is not a version number; this host uses {ABI_VERSION} (it loads plugins built \
             against {range}); rebuild the plugin against gradcodec-abi {ABI_VERSION}"
        )),
        Some((plugin_major, plugin_minor, _)) if plugin_major == major => {
            if major == 0 && plugin_minor != minor {
                Err(format!(
                    "incompatible plugin ABI: the library was built against gradcodec-abi \
                     {plugin_version}, this host uses {ABI_VERSION}; rebuild the plugin against \
                     gradcodec-abi {ABI_VERSION}"
                ))
            } else if plugin_minor > minor {
                Err(format!(
                    "incompatible plugin ABI: the library was built against gradcodec-abi \
                     {plugin_version}, newer than this host's {ABI_VERSION} (it loads plugins built \
                     against {range}); use a host built with gradcodec-abi {plugin_version} or \
                     later, or rebuild the plugin against gradcodec-abi {ABI_VERSION}"
                ))
            } else {
                Ok(())
            }
        }
        Some(_) => Err(format!(
            "incompatible plugin ABI: the library was built against gradcodec-abi \
             {plugin_version}, this host uses {ABI_VERSION} (it loads plugins built against \
             {range}); rebuild the plugin against gradcodec-abi {ABI_VERSION}"
        )),
    }
}

/// Why [`init_root_module`] refused a library.
#[derive(Debug)]
pub enum RootModuleLoadError {
    /// The library's ABI version is not one this host loads ([`check_abi_version`]'s message).
    Version(String),
    /// `abi_stable` refused it: the root module's layout, or its initializer failed.
    Library(LibraryError),
}

impl fmt::Display for RootModuleLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(message) => f.write_str(message),
            Self::Library(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for RootModuleLoadError {}

/// The number of fields of the first prefix type (the root module) under
/// `layout`, the layout of a library's `PluginRootRef`.
fn root_field_count(layout: &'static TypeLayout) -> Option<usize> {
    let mut queue = vec![layout];
    let mut visited = 0;
    while let Some(layout) = (!queue.is_empty()).then(|| queue.remove(0)) {
        visited += 1;
        if visited > 64 {
            return None;
        }
        match layout.data() {
            TLData::PrefixType(prefix) => return Some(prefix.fields.len()),
            TLData::Struct { fields } => queue.extend(fields.iter().map(|f| f.layout())),
            _ => {}
        }
        queue.extend(layout.phantom_fields().iter().map(|f| f.layout()));
    }
    None
}

fn layout_error(message: String) -> RootModuleLoadError {
    RootModuleLoadError::Library(LibraryError::AbiInstability(RBoxError::from_fmt(&message)))
}

/// Loads the root module of a library, checking it the way this ABI's rules
/// say (docs/abi.md): first the version ([`check_abi_version`] on the
/// library's abi_stable version strings), then the layout against the root
/// module of the minor the library was built for (`abi_stable` accepts a
/// library whose root module has at least the host's fields, never fewer; a
/// library of an older minor is checked against the frozen layout of that minor,
/// [`v1_0`], and read through the current [`PluginRootRef`], whose accessors for
/// the fields it lacks return `None`).
///
/// Use this instead of `LibHeader::init_root_module::<PluginRootRef>`, which
/// refuses every library built against an older minor.
pub fn init_root_module(header: &LibHeader) -> Result<PluginRootRef, RootModuleLoadError> {
    let version = header.version_strings().version;
    check_abi_version(version.as_str()).map_err(RootModuleLoadError::Version)?;
    let Some(layout) = header.layout() else {
        return Err(layout_error(
            "the library exports its root module without a layout \
             (#[unsafe_no_layout_constant]); this host checks the layout of every plugin"
                .to_string(),
        ));
    };
    let interface = match root_field_count(layout) {
        Some(count) if count == v1_0::ROOT_MODULE_FIELDS => {
            <v1_0::PluginRootRef as StableAbi>::LAYOUT
        }
        Some(count) if count < ROOT_MODULE_FIELDS => {
            return Err(layout_error(format!(
                "the library's root module has {count} fields, which no gradcodec-abi 1.x up to \
                 {ABI_VERSION} has"
            )))
        }
        // As many fields as this version or more (a newer minor was refused
        // above), or no prefix type at all: the checker says what differs.
        _ => <PluginRootRef as StableAbi>::LAYOUT,
    };
    exported_check_layout_compatibility(interface, layout)
        .into_result()
        .map_err(|error| {
            RootModuleLoadError::Library(LibraryError::AbiInstability(error.to_formatted_error()))
        })?;
    // SAFETY: the library's root module layout was just checked against
    // `interface`: either the current `PluginRootRef` (then it has at least all of
    // its fields, with the same types), or the frozen ABI 1.0 root module, whose
    // six fields are the first six of the current one with the same names, types
    // and `last_prefix_field`. The current `PluginRootRef` reads those prefix
    // fields directly and every later field through an accessor that checks the
    // library's own field count (stored in the module by abi_stable) and returns
    // `None` for a field the library lacks, so no read goes past its module.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginRootRef>() }
        .map_err(RootModuleLoadError::Library)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_older_or_equal_minor_loads() {
        let (major, minor, _) = parse(ABI_VERSION).unwrap();
        assert!(major >= 1);
        for plugin_minor in 0..=minor {
            check_abi_version(&format!("{major}.{plugin_minor}.0")).unwrap();
            check_abi_version(&format!("{major}.{plugin_minor}.7")).unwrap();
        }
    }

    #[test]
    fn newer_minor_and_other_majors_are_refused_naming_both_versions() {
        let (major, minor, _) = parse(ABI_VERSION).unwrap();
        let newer = format!("{major}.{}.0", minor + 1);
        let message = check_abi_version(&newer).unwrap_err();
        assert!(
            message.contains(&newer) && message.contains(ABI_VERSION),
            "{message}"
        );
        assert!(message.contains("newer"), "{message}");
        for other in [
            format!("{}.0.0", major + 1),
            format!("{}.{minor}.0", major - 1),
            "0.0.3".to_string(),
            "0.1.0".to_string(),
        ] {
            let message = check_abi_version(&other).unwrap_err();
            assert!(
                message.contains(&other) && message.contains(ABI_VERSION),
                "{message}"
            );
        }
        for garbage in ["", "1", "1.0", "1.0.0.0", "x.y.z", "1.-1.0"] {
            assert!(check_abi_version(garbage).is_err(), "{garbage:?} accepted");
        }
    }

    #[test]
    fn root_field_counts_of_each_minor() {
        assert_eq!(
            root_field_count(<PluginRootRef as StableAbi>::LAYOUT),
            Some(ROOT_MODULE_FIELDS)
        );
        assert_eq!(
            root_field_count(<v1_0::PluginRootRef as StableAbi>::LAYOUT),
            Some(v1_0::ROOT_MODULE_FIELDS)
        );
    }

    #[test]
    fn the_frozen_1_0_root_is_a_prefix_of_the_current_one() {
        // A 1.0 library checks against v1_0; a current host (more fields)
        // refuses it under abi_stable's own rule, which is why v1_0 exists.
        let current = <PluginRootRef as StableAbi>::LAYOUT;
        let frozen = <v1_0::PluginRootRef as StableAbi>::LAYOUT;
        exported_check_layout_compatibility(frozen, current)
            .into_result()
            .unwrap();
        assert!(exported_check_layout_compatibility(current, frozen)
            .into_result()
            .is_err());
    }
}
