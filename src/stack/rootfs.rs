//! What debootstrap and maintainer scripts would have done, where it matters at run time.
//!
//! kiln never runs package scripts (they need a shell, dpkg and often root). Instead it does
//! this documented list itself:
//!
//! | when | what | instead of |
//! |---|---|---|
//! | base layer | `bin`, `sbin`, `lib` (and `lib32`/`lib64`/`libx32` where `usr/` has them) → `usr/…` symlinks | debootstrap's merged-`/usr` |
//! | base layer | `/etc/passwd`, `/etc/group` with root, nobody and the CNB user; its home; `/root`; `/tmp` (1777) | base-passwd's postinst, adduser |
//! | base layer | `/etc/nsswitch.conf` (files, then dns for hosts) | glibc's defaults, made explicit |
//! | ca-certificates | `/etc/ssl/certs/ca-certificates.crt` from every certificate under `/usr/share/ca-certificates`, sorted; `/usr/lib/ssl/cert.pem` and `/usr/lib/ssl/certs` pointing at it | `update-ca-certificates`, the openssl package's links |
//! | tzdata | `/etc/localtime` → `Etc/UTC`, `/etc/timezone` | tzdata's postinst |
//! | gcc, g++ | `/usr/bin/cc` → `gcc`, `/usr/bin/c++` → `g++` (what compilers, Cargo and node-gyp call) | their `update-alternatives` registrations |
//! | debianutils, mawk | `/usr/bin/which` → `which.debianutils` (bookworm's and trixie's debianutils ship only that), `/usr/bin/awk` → `mawk` (what build scripts and `configure` call), where the package has the target and nothing else made the link | their `update-alternatives` registrations |
//! | libblas3, liblapack3 | `/usr/lib/<triplet>/libblas.so.3` → `blas/libblas.so.3`, `liblapack.so.3` → `lapack/liblapack.so.3` (R and numerical libraries link them), where the package has the target and nothing else made the link | their `update-alternatives` registrations |
//! | r-base-core | `/etc/R/Renviron` (R's site environment: `R_LIBS_SITE` with `/usr/lib/R/site-library`, where Debian's `r-cran-*` packages are, the paper size, the `zip`/`unzip` commands) from the `/usr/lib/R/etc/Renviron.ucf` it ships | its postinst's `ucf` |
//! | every package | `/var/lib/dpkg/status.d/<package>`: its control stanza with `Status: install ok installed` | dpkg's status database, as distroless images record it for SBOM and vulnerability scanners |
//!
//! Packages that ship the links runtimes are found by (`/usr/bin/python3`, `/usr/bin/node`)
//! need nothing more.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::StackError;
use super::control::Stanza;
use super::deb::{MERGED_USR_DIRS, Unpacker};
use super::definition::UserDef;
use crate::layer::EntryMetadata;

const ROOT_FILE: EntryMetadata = EntryMetadata {
    mode: 0o644,
    uid: 0,
    gid: 0,
};
const ROOT_DIR: EntryMetadata = EntryMetadata {
    mode: 0o755,
    uid: 0,
    gid: 0,
};
const ROOT_LINK: EntryMetadata = EntryMetadata {
    mode: 0o777,
    uid: 0,
    gid: 0,
};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StackError + use<> {
    let path = path.to_path_buf();
    move |source| StackError::Io { path, source }
}

/// Writes a file (replacing any) and records it as root-owned 0644.
fn write_file(unpacker: &mut Unpacker, rel: &str, content: &[u8]) -> Result<(), StackError> {
    let path = unpacker.root().join(rel);
    ensure_dir(unpacker, Path::new(rel).parent().unwrap_or(Path::new("")))?;
    if fs::symlink_metadata(&path).is_ok() {
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    fs::write(&path, content).map_err(io_err(&path))?;
    unpacker.set_metadata(rel, ROOT_FILE);
    Ok(())
}

/// Creates a symlink (replacing any file or link) and records it.
fn write_link(unpacker: &mut Unpacker, rel: &str, target: &str) -> Result<(), StackError> {
    let path = unpacker.root().join(rel);
    ensure_dir(unpacker, Path::new(rel).parent().unwrap_or(Path::new("")))?;
    if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    symlink(target, &path).map_err(io_err(&path))?;
    unpacker.set_metadata(rel, ROOT_LINK);
    Ok(())
}

/// Creates a directory (and its parents, recorded root 0755 unless already known).
fn ensure_dir(unpacker: &mut Unpacker, rel: &Path) -> Result<(), StackError> {
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    let path = unpacker.root().join(rel);
    if !path.is_dir() {
        fs::create_dir_all(&path).map_err(io_err(&path))?;
        let mut dir = Some(rel);
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            unpacker.set_metadata_if_absent(&d.to_string_lossy(), ROOT_DIR);
            dir = d.parent();
        }
    }
    Ok(())
}

fn make_dir(unpacker: &mut Unpacker, rel: &str, meta: EntryMetadata) -> Result<(), StackError> {
    ensure_dir(unpacker, Path::new(rel))?;
    unpacker.set_metadata(rel, meta);
    Ok(())
}

/// The base layer's file-system skeleton: merged-`/usr` links, users and groups, homes.
pub(crate) fn base_layout(unpacker: &mut Unpacker, user: &UserDef) -> Result<(), StackError> {
    for dir in MERGED_USR_DIRS {
        let always = matches!(dir, "bin" | "sbin" | "lib");
        if always || unpacker.root().join("usr").join(dir).is_dir() {
            ensure_dir(unpacker, &Path::new("usr").join(dir))?;
            write_link(unpacker, dir, &format!("usr/{dir}"))?;
        }
    }
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         {name}:x:{uid}:{gid}:{name}:{home}:/usr/sbin/nologin\n",
        name = user.name,
        uid = user.uid,
        gid = user.gid,
        home = user.home,
    );
    write_file(unpacker, "etc/passwd", passwd.as_bytes())?;
    let group = format!(
        "root:x:0:\nnogroup:x:65534:\n{name}:x:{gid}:\n",
        name = user.name,
        gid = user.gid
    );
    write_file(unpacker, "etc/group", group.as_bytes())?;
    if !unpacker.root().join("etc/nsswitch.conf").exists() {
        write_file(
            unpacker,
            "etc/nsswitch.conf",
            b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n",
        )?;
    }
    make_dir(
        unpacker,
        "root",
        EntryMetadata {
            mode: 0o700,
            uid: 0,
            gid: 0,
        },
    )?;
    make_dir(
        unpacker,
        "tmp",
        EntryMetadata {
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
    )?;
    make_dir(
        unpacker,
        user.home.trim_start_matches('/'),
        EntryMetadata {
            mode: 0o755,
            uid: user.uid,
            gid: user.gid,
        },
    )?;
    Ok(())
}

/// Commands that packages register with `update-alternatives` instead of shipping: (package,
/// link, target relative to the link's directory). Made only where the package has the target
/// and the link is missing, so a release whose package ships the command itself is unchanged.
const ALTERNATIVES: [(&str, &str, &str); 2] = [
    ("debianutils", "usr/bin/which", "which.debianutils"),
    ("mawk", "usr/bin/awk", "mawk"),
];

/// Configures the packages of one layer (see the module docs) and records them in
/// `/var/lib/dpkg/status.d/`.
pub(crate) fn configure(
    unpacker: &mut Unpacker,
    packages: &[(String, Stanza)],
) -> Result<Vec<String>, StackError> {
    let mut done = Vec::new();
    let installed = |name: &str| packages.iter().any(|(n, _)| n == name);
    if installed("ca-certificates") {
        let count = ca_bundle(unpacker)?;
        done.push(format!("CA bundle with {count} certificates"));
    }
    if installed("tzdata") {
        write_link(unpacker, "etc/localtime", "/usr/share/zoneinfo/Etc/UTC")?;
        write_file(unpacker, "etc/timezone", b"Etc/UTC\n")?;
        done.push("time zone Etc/UTC".to_string());
    }
    for (package, link, target) in [("gcc", "usr/bin/cc", "gcc"), ("g++", "usr/bin/c++", "g++")] {
        if installed(package) {
            write_link(unpacker, link, target)?;
            done.push(format!("/{link} → {target}"));
        }
    }
    for (package, link, target) in ALTERNATIVES {
        let dir = Path::new(link).parent().unwrap_or(Path::new(""));
        let root = unpacker.root();
        if installed(package)
            && root.join(dir).join(target).is_file()
            && fs::symlink_metadata(root.join(link)).is_err()
        {
            write_link(unpacker, link, target)?;
            done.push(format!("/{link} → {target}"));
        }
    }
    // The reference BLAS and LAPACK live in subdirectories, linked by alternatives.
    for (package, lib, dir) in [
        ("libblas3", "libblas.so.3", "blas"),
        ("liblapack3", "liblapack.so.3", "lapack"),
    ] {
        if !installed(package) {
            continue;
        }
        for triplet in ["x86_64-linux-gnu", "aarch64-linux-gnu"] {
            let link = format!("usr/lib/{triplet}/{lib}");
            let root = unpacker.root();
            if root
                .join(format!("usr/lib/{triplet}/{dir}/{lib}"))
                .is_file()
                && fs::symlink_metadata(root.join(&link)).is_err()
            {
                write_link(unpacker, &link, &format!("{dir}/{lib}"))?;
                done.push(format!("/{link} → {dir}/{lib}"));
            }
        }
    }
    // r-base-core's postinst installs R's site environment with ucf.
    if installed("r-base-core") {
        let from = unpacker.root().join("usr/lib/R/etc/Renviron.ucf");
        if fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) {
            let content = fs::read(&from).map_err(io_err(&from))?;
            write_file(unpacker, "etc/R/Renviron", &content)?;
            done.push("/etc/R/Renviron from Renviron.ucf".to_string());
        }
    }
    for (name, control) in packages {
        let mut record = control.clone();
        record.set("Status", "install ok installed");
        write_file(
            unpacker,
            &format!("var/lib/dpkg/status.d/{name}"),
            record.to_deb822().as_bytes(),
        )?;
    }
    Ok(done)
}

/// Concatenates every certificate under `usr/share/ca-certificates`, sorted by path, into
/// `etc/ssl/certs/ca-certificates.crt`. Returns how many.
fn ca_bundle(unpacker: &mut Unpacker) -> Result<usize, StackError> {
    let dir = unpacker.root().join("usr/share/ca-certificates");
    let mut certs: Vec<_> = walkdir::WalkDir::new(&dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "crt"))
        .map(|e| e.path().to_path_buf())
        .collect();
    certs.sort();
    let mut bundle = Vec::new();
    for cert in &certs {
        let mut pem = fs::read(cert).map_err(io_err(cert))?;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        bundle.extend_from_slice(&pem);
    }
    write_file(unpacker, "etc/ssl/certs/ca-certificates.crt", &bundle)?;
    write_link(
        unpacker,
        "usr/lib/ssl/cert.pem",
        "/etc/ssl/certs/ca-certificates.crt",
    )?;
    write_link(unpacker, "usr/lib/ssl/certs", "/etc/ssl/certs")?;
    Ok(certs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserDef {
        UserDef {
            name: "cnb".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/cnb".into(),
        }
    }

    #[test]
    fn base_layout_makes_links_users_and_homes() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("usr/lib64")).unwrap();
        let mut unpacker = Unpacker::new(root.path()).unwrap();
        base_layout(&mut unpacker, &user()).unwrap();
        let r = root.path();
        assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(
            fs::read_link(r.join("lib64")).unwrap(),
            Path::new("usr/lib64")
        );
        assert!(fs::symlink_metadata(r.join("libx32")).is_err());
        assert!(
            fs::read_to_string(r.join("etc/passwd"))
                .unwrap()
                .contains("cnb:x:1000:1000:cnb:/home/cnb")
        );
        let meta = unpacker.into_metadata();
        assert_eq!(meta["home/cnb"].uid, 1000);
        assert_eq!(meta["tmp"].mode, 0o1777);
        assert_eq!(meta["root"].mode, 0o700);
        assert_eq!(meta["etc/passwd"].mode, 0o644);
    }

    #[test]
    fn alternatives_are_linked_only_where_the_package_lacks_the_command() {
        let control = |name: &str| {
            super::super::control::parse_stanzas(&format!("Package: {name}\nVersion: 1\n"))
                .unwrap()
                .remove(0)
        };
        let packages = [
            ("debianutils".to_string(), control("debianutils")),
            ("mawk".to_string(), control("mawk")),
        ];
        // Current debianutils ships only which.debianutils, mawk only mawk.
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("which.debianutils"), "#!/bin/sh\n").unwrap();
        fs::write(bin.join("mawk"), "ELF").unwrap();
        let mut unpacker = Unpacker::new(root.path()).unwrap();
        configure(&mut unpacker, &packages).unwrap();
        assert_eq!(
            fs::read_link(bin.join("which")).unwrap(),
            Path::new("which.debianutils")
        );
        assert_eq!(fs::read_link(bin.join("awk")).unwrap(), Path::new("mawk"));
        // A release whose debianutils ships which itself: left alone.
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("which"), "#!/bin/sh\n").unwrap();
        let mut unpacker = Unpacker::new(root.path()).unwrap();
        let done = configure(&mut unpacker, &packages).unwrap();
        assert!(fs::symlink_metadata(bin.join("which")).unwrap().is_file());
        assert!(fs::symlink_metadata(bin.join("awk")).is_err());
        assert!(done.is_empty(), "{done:?}");
    }

    #[test]
    fn configure_builds_the_ca_bundle_timezone_alternatives_and_status() {
        let root = tempfile::tempdir().unwrap();
        let certs = root.path().join("usr/share/ca-certificates/mozilla");
        fs::create_dir_all(&certs).unwrap();
        fs::write(certs.join("b.crt"), "-----B-----").unwrap();
        fs::write(certs.join("a.crt"), "-----A-----\n").unwrap();
        let mut unpacker = Unpacker::new(root.path()).unwrap();
        let control = |name: &str| {
            super::super::control::parse_stanzas(&format!("Package: {name}\nVersion: 1\n"))
                .unwrap()
                .remove(0)
        };
        let done = configure(
            &mut unpacker,
            &[
                ("ca-certificates".into(), control("ca-certificates")),
                ("tzdata".into(), control("tzdata")),
                ("gcc".into(), control("gcc")),
            ],
        )
        .unwrap();
        assert_eq!(done.len(), 3);
        // The compiler's alternative, and none for a compiler that is not there.
        assert_eq!(
            fs::read_link(root.path().join("usr/bin/cc")).unwrap(),
            Path::new("gcc")
        );
        assert!(fs::symlink_metadata(root.path().join("usr/bin/c++")).is_err());
        // mawk is not installed here: no awk.
        assert!(fs::symlink_metadata(root.path().join("usr/bin/awk")).is_err());
        let r = root.path();
        assert_eq!(
            fs::read_to_string(r.join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
            "-----A-----\n-----B-----\n"
        );
        assert_eq!(
            fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/Etc/UTC")
        );
        assert_eq!(
            fs::read_to_string(r.join("var/lib/dpkg/status.d/tzdata")).unwrap(),
            "Package: tzdata\nVersion: 1\nStatus: install ok installed\n"
        );
    }
}
