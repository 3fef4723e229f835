//! Debian packages buildpacks ask for: a buildpack that needs packages of the stack in the
//! image beyond its run image (kiln/r: the `r-cran-*` packages of an app's R packages)
//! names them in [`crate::lifecycle::build::DEBIAN_PACKAGES_FILE`] in its layers directory.
//!
//! kiln resolves them against the stack's archive, verified as `kiln stack lock` verifies it
//! ([`crate::stack::native::resolve_requested`]), with the run image's locked packages and the
//! stack's `exclude` list counting as present, and adds what the run image lacks as one layer
//! right after the run image's layers — made exactly like a stack flavour level, so it lands
//! at the image's root (`/usr/lib/R/site-library` for R packages) with a
//! `/var/lib/dpkg/status.d` record per package, and the same packages give the same bytes. The
//! log names each package and why; the labels [`DEBIAN_PACKAGES`] (`name=version`, what the
//! layer holds) and [`DEBIAN_REQUESTS`] (each request, its reason, the version chosen and the
//! app's pin) record the choice. A package the archive lacks fails the export
//! ([`ExportError::DebianPackagesMissing`], exit code 53).
//!
//! The versions are the archive's when the image is built (a stable release changes them
//! only with point releases and security updates), not a committed lock's: the stack's locks
//! cover its flavours, and locking every package a buildpack might ask for (trixie has 1,118
//! `r-cran-*` packages, 1,894 with what they need) would put megabytes of lock into every kiln.

use std::collections::{BTreeMap, BTreeSet};

use super::native::NativeLayer;
use super::{ExportContext, ExportError};
use crate::event::Event;
use crate::labels::{DEBIAN_PACKAGES, DEBIAN_REQUESTS};
use crate::lifecycle::build::DebianPackageRequest;
use crate::stack::StackSource;

/// One request as the [`DEBIAN_REQUESTS`] label records it.
#[derive(Debug, serde::Serialize)]
struct Recorded<'a> {
    name: &'a str,
    #[serde(rename = "for")]
    why: &'a str,
    buildpack: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a str>,
}

/// Makes the layer of the packages the buildpacks asked for; `None` when none did (or the
/// run image has them all).
pub(super) fn requested_packages(
    ctx: &ExportContext<'_>,
) -> Result<Option<NativeLayer>, ExportError> {
    let requests: Vec<(String, &DebianPackageRequest)> = ctx
        .build
        .buildpacks
        .iter()
        .flat_map(|o| {
            o.debian_packages
                .iter()
                .map(move |r| (o.buildpack.id().to_string(), r))
        })
        .collect();
    if requests.is_empty() {
        return Ok(None);
    }
    let Some((source, def, run_packages, exclude)) = run_image_stack(ctx, &requests)? else {
        return Ok(None);
    };
    let names: Vec<String> = requests.iter().map(|(_, r)| r.name.clone()).collect();
    ctx.events.event(&Event::Step(format!(
        "Resolving {} Debian package(s) the buildpacks asked for against stack {}'s archive",
        names.iter().collect::<BTreeSet<_>>().len(),
        def.stack.name
    )));
    let found = crate::stack::native::resolve_requested(
        &source,
        &ctx.run_image.platform.architecture,
        &run_packages,
        &exclude,
        &names,
        ctx.events,
    )
    .map_err(ExportError::NativePackages)?;
    if !found.missing.is_empty() {
        let packages = requests
            .iter()
            .filter(|(_, r)| found.missing.contains(&r.name))
            .map(|(id, r)| format!("{} (for {}, asked for by {id})", r.name, r.why))
            .collect();
        return Err(ExportError::DebianPackagesMissing {
            packages,
            stack: def.stack.name.to_string(),
        });
    }
    let recorded = log_choices(
        ctx,
        &requests,
        &found,
        &run_packages,
        def.stack.name.as_str(),
    );
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for p in found
        .install
        .iter()
        .filter(|p| !wanted.contains(p.name.as_str()))
    {
        ctx.events.event(&Event::Info(format!(
            "Debian packages: {} {} (a dependency)",
            p.name, p.version
        )));
    }
    if found.install.is_empty() {
        return Ok(None);
    }
    let blob = crate::stack::native::packages_layer_for(
        ctx.store,
        &source,
        &found.install,
        ctx.events,
        ctx.cancel,
    )
    .map_err(ExportError::NativePackages)?;
    let installed: Vec<String> = found
        .install
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    let labels = vec![
        (DEBIAN_PACKAGES.to_string(), super::label_json(&installed)?),
        (DEBIAN_REQUESTS.to_string(), super::label_json(&recorded)?),
    ];
    Ok(Some(NativeLayer {
        blob,
        created_by: format!(
            "kiln Debian packages: {} packages of stack {} for {}",
            installed.len(),
            def.stack.name,
            wanted.into_iter().collect::<Vec<_>>().join(", ")
        ),
        name: "debian packages".to_string(),
        labels,
    }))
}

/// What the run image was made from: its stack, the stack's definition, the run image's
/// packages (name → version) and the packages counting as present (the stack's `exclude`
/// list and the run flavour's). `None`, with a warning, when kiln did not make it.
#[allow(clippy::type_complexity)]
fn run_image_stack(
    ctx: &ExportContext<'_>,
    requests: &[(String, &DebianPackageRequest)],
) -> Result<
    Option<(
        StackSource,
        crate::stack::StackDefinition,
        BTreeMap<String, String>,
        BTreeSet<String>,
    )>,
    ExportError,
> {
    let run_labels = super::native::run_image_labels(ctx);
    let (Some(stack_label), Some(packages_label)) = (
        run_labels.get(crate::labels::STACK),
        run_labels.get(crate::labels::STACK_PACKAGES),
    ) else {
        let names: Vec<&str> = requests.iter().map(|(_, r)| r.name.as_str()).collect();
        ctx.events.event(&Event::Warning(format!(
            "the buildpacks asked for Debian packages ({}), but kiln adds packages only to run images of its stacks and {} is not one: the run image must have them",
            names.join(", "),
            ctx.run_image.label_name()
        )));
        return Ok(None);
    };
    let (stack_name, flavour) = stack_label.split_once('/').unwrap_or((stack_label, ""));
    let source = open_stack(ctx.stack, stack_name).map_err(ExportError::NativePackages)?;
    let def = source.definition().map_err(ExportError::NativePackages)?;
    let mut exclude: BTreeSet<String> = def.stack.exclude.iter().cloned().collect();
    if let Some(own) = def
        .flavours
        .iter()
        .find(|(name, _)| name.as_str() == flavour)
        .and_then(|(_, f)| f.exclude.as_ref())
    {
        exclude.extend(own.iter().cloned());
    }
    let run_packages: BTreeMap<String, String> = packages_label
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Ok(Some((source, def, run_packages, exclude)))
}

/// Logs each request's choice (warning where the app pins another version) and returns what
/// the [`DEBIAN_REQUESTS`] label records.
fn log_choices<'a>(
    ctx: &ExportContext<'_>,
    requests: &'a [(String, &'a DebianPackageRequest)],
    found: &crate::stack::native::Requested,
    run_packages: &BTreeMap<String, String>,
    stack: &str,
) -> Vec<Recorded<'a>> {
    let versions: BTreeMap<&str, &str> = found
        .install
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .chain(run_packages.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .collect();
    let mut recorded = Vec::new();
    for (id, r) in requests {
        let version = versions.get(r.name.as_str()).copied().unwrap_or_default();
        let place = if run_packages.contains_key(&r.name) {
            " (the run image has it)"
        } else {
            ""
        };
        ctx.events.event(&Event::Step(format!(
            "Debian packages: {} {version} for {}{place}",
            r.name, r.why
        )));
        if let Some(pin) = &r.pin
            && upstream(version) != *pin
        {
            ctx.events.event(&Event::Warning(format!(
                "{} pins {pin}, but stack {}'s archive has {} {version}, which the image gets (Debian carries one version of each package in a release)",
                r.why, stack, r.name
            )));
        }
        recorded.push(Recorded {
            name: &r.name,
            why: &r.why,
            buildpack: id.clone(),
            version: version.to_string(),
            pin: r.pin.as_deref(),
        });
    }
    recorded
}

/// The stack the run image was made from: the build's `--stack` when it is that one, else
/// the built-in stack of that name.
fn open_stack(stack: &str, name: &str) -> Result<StackSource, crate::stack::StackError> {
    let given = StackSource::open(stack)?;
    if given.definition()?.stack.name.as_str() == name {
        return Ok(given);
    }
    StackSource::open(name)
}

/// The upstream part of a Debian version (`1.9.1+dfsg-1` → `1.9.1`, `1:2.3-4` → `2.3`).
fn upstream(debian: &str) -> &str {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    let no_revision = no_epoch.rsplit_once('-').map_or(no_epoch, |(v, _)| v);
    no_revision.split(['+', '~']).next().unwrap_or(no_revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions_drop_epoch_revision_and_repack() {
        assert_eq!(upstream("1.9.1+dfsg-1"), "1.9.1");
        assert_eq!(upstream("1:2.3-4"), "2.3");
        assert_eq!(upstream("1.4-8-1"), "1.4-8");
        assert_eq!(upstream("1.0"), "1.0");
    }
}
