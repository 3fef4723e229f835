//! What kiln's stacks provide: the package versions their committed locks pin, by
//! distribution and architecture (compiled in by `build.rs`). A buildpack checks a requested
//! runtime version against the version of the stack package that provides it, so a request
//! the run image cannot meet fails at detect time with what is available.
//!
//! The table describes kiln's own stack images. On a run image of a distribution kiln has no
//! stack for, nothing is known and the buildpacks say so instead of checking.

use libcnb::Target;

include!(concat!(env!("OUT_DIR"), "/inventory.rs"));

/// The upstream version of `package` in kiln's stack images for `target`, if kiln has a
/// stack for its distribution and architecture.
pub(crate) fn provided(target: &Target, package: &str) -> Option<String> {
    PACKAGES
        .iter()
        .find(|(_, distro, version, arch, name, _)| {
            *distro == target.distro_name
                && *version == target.distro_version
                && *arch == target.arch
                && *name == package
        })
        .map(|(.., deb)| upstream(deb))
}

/// Every kiln stack with `package` for `arch`, and its upstream version there, in stack
/// name order: `[("bookworm", "3.11.2"), ("trixie", "3.13.5")]` for `python3`.
pub(crate) fn stacks_providing(arch: &str, package: &str) -> Vec<(&'static str, String)> {
    PACKAGES
        .iter()
        .filter(|(_, _, _, a, name, _)| *a == arch && *name == package)
        .map(|(stack, .., deb)| (*stack, upstream(deb)))
        .collect()
}

/// The names of kiln's stacks, the newest distribution release first (trixie, then
/// bookworm).
pub(crate) fn stacks_newest_first() -> Vec<&'static str> {
    let mut stacks: Vec<(&str, &str)> = PACKAGES
        .iter()
        .map(|(stack, _, version, ..)| (*stack, *version))
        .collect();
    stacks.dedup();
    let release = |v: &str| -> Vec<u64> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    stacks.sort_by(|a, b| release(b.1).cmp(&release(a.1)).then(a.0.cmp(b.0)));
    stacks.dedup();
    stacks.into_iter().map(|(stack, _)| stack).collect()
}

/// The kiln stack whose images `target` describes (`trixie` for debian 13), if any.
pub(crate) fn stack_of(target: &Target) -> Option<&'static str> {
    PACKAGES
        .iter()
        .find(|(_, distro, version, ..)| {
            *distro == target.distro_name && *version == target.distro_version
        })
        .map(|(stack, ..)| *stack)
}

/// `distro version` of `target` for messages (`debian 12`), or `None` without one.
pub(crate) fn distro(target: &Target) -> Option<String> {
    (!target.distro_name.is_empty())
        .then(|| format!("{} {}", target.distro_name, target.distro_version))
}

/// The upstream part of a Debian version: no epoch, no Debian revision, no repack suffix
/// (`1:18.20.4+dfsg-1~deb12u3` → `18.20.4`).
pub(crate) fn upstream(debian: &str) -> String {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    let no_revision = no_epoch.rsplit_once('-').map_or(no_epoch, |(v, _)| v);
    no_revision
        .split(['+', '~'])
        .next()
        .unwrap_or(no_revision)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(distro: &str, version: &str, arch: &str) -> Target {
        Target {
            os: "linux".into(),
            arch: arch.into(),
            arch_variant: None,
            distro_name: distro.into(),
            distro_version: version.into(),
        }
    }

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream("18.20.4+dfsg-1~deb12u3"), "18.20.4");
        assert_eq!(upstream("3.11.2-1+b1"), "3.11.2");
        assert_eq!(upstream("2.36-9+deb12u10"), "2.36");
        assert_eq!(upstream("1:2.3-4"), "2.3");
        assert_eq!(upstream("1.0"), "1.0");
    }

    #[test]
    fn bookworm_and_trixie_provide_python_and_node() {
        for arch in ["amd64", "arm64"] {
            let t = target("debian", "12", arch);
            assert!(provided(&t, "python3").unwrap().starts_with("3.11."));
            assert!(provided(&t, "nodejs").unwrap().starts_with("18."));
            assert_eq!(stack_of(&t), Some("bookworm"));
            let t = target("debian", "13", arch);
            assert!(provided(&t, "python3").unwrap().starts_with("3.13."));
            assert!(provided(&t, "nodejs").unwrap().starts_with("20."));
            assert_eq!(stack_of(&t), Some("trixie"));
            let stacks: Vec<_> = stacks_providing(arch, "python3")
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            assert_eq!(stacks, ["bookworm", "trixie"]);
        }
        assert_eq!(stack_of(&target("ubuntu", "24.04", "amd64")), None);
        assert_eq!(stacks_newest_first(), ["trixie", "bookworm"]);
        assert_eq!(
            provided(&target("ubuntu", "24.04", "amd64"), "python3"),
            None
        );
        assert_eq!(distro(&target("", "", "amd64")), None);
    }
}
