//! Choosing from a stack: the platform buildpacks build for when the run image comes from a
//! stack, and the flavour that has what a group of buildpacks needs.

use std::collections::BTreeSet;

use super::definition::FlavourName;
use super::{StackError, StackSource, choose_flavour};
use crate::buildpack::target::RunTarget;
use crate::image::TargetPlatform;

/// The platform buildpacks build for when the run image comes from `stack`: linux, the
/// requested (or the host's) architecture, and the stack's distribution.
pub(crate) fn target(
    stack: &str,
    platform: Option<&TargetPlatform>,
) -> Result<RunTarget, StackError> {
    let def = StackSource::open(stack)?.definition()?;
    let platform = platform.cloned().unwrap_or_else(TargetPlatform::host);
    Ok(RunTarget {
        os: platform.os,
        arch: platform.architecture,
        variant: platform.variant,
        distro_name: Some(def.stack.distro.name),
        distro_version: Some(def.stack.distro.version),
    })
}

/// The flavour of `stack` that has the Debian packages `mixins` (what the buildpacks need in
/// their run image), with the stack and the platform it is for.
pub(crate) fn flavour(
    stack: &str,
    platform: Option<&TargetPlatform>,
    mixins: &BTreeSet<String>,
) -> Result<(StackSource, FlavourName, TargetPlatform), StackError> {
    let source = StackSource::open(stack)?;
    let platform = platform.cloned().unwrap_or_else(TargetPlatform::host);
    let flavour = choose_flavour(&source, &platform.architecture, mixins)?;
    Ok((source, flavour, platform))
}
