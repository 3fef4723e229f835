//! The platform buildpacks build for (`CNB_TARGET_*`), and whether a buildpack's
//! `[[targets]]` accept it.

use serde::Serialize;

use super::descriptor::Target;

/// The platform the image will run on, as buildpacks see it (`CNB_TARGET_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunTarget {
    /// `CNB_TARGET_OS`.
    pub os: String,
    /// `CNB_TARGET_ARCH`.
    pub arch: String,
    /// `CNB_TARGET_ARCH_VARIANT`.
    pub variant: Option<String>,
    /// `CNB_TARGET_DISTRO_NAME`.
    pub distro_name: Option<String>,
    /// `CNB_TARGET_DISTRO_VERSION`.
    pub distro_version: Option<String>,
}

impl RunTarget {
    /// The `CNB_TARGET_*` variables.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("CNB_TARGET_OS", self.os.clone()),
            ("CNB_TARGET_ARCH", self.arch.clone()),
        ];
        let optional = [
            ("CNB_TARGET_ARCH_VARIANT", &self.variant),
            ("CNB_TARGET_DISTRO_NAME", &self.distro_name),
            ("CNB_TARGET_DISTRO_VERSION", &self.distro_version),
        ];
        for (name, value) in optional {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                vars.push((name, v.clone()));
            }
        }
        vars
    }

    /// Whether a buildpack `[[targets]]` entry accepts this target. Empty fields on either
    /// side match anything; if the buildpack names distros, one must match.
    pub fn satisfies(&self, target: &Target) -> bool {
        let matches =
            |a: &str, b: Option<&str>| a.is_empty() || b.is_none_or(|b| b.is_empty() || a == b);
        if !matches(&self.os, target.os.as_deref())
            || !matches(&self.arch, target.arch.as_deref())
            || !matches(self.variant.as_deref().unwrap_or(""), target.variant())
        {
            return false;
        }
        if target.distros.is_empty() {
            return true;
        }
        let (Some(name), version) = (&self.distro_name, &self.distro_version) else {
            return false;
        };
        target.distros.iter().any(|d| {
            matches(name, Some(&d.name))
                && matches(version.as_deref().unwrap_or(""), Some(&d.version))
        })
    }
}
