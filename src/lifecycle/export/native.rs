//! Native libraries follow the app: shared libraries that the app's ELF files need and the
//! run image lacks are added to the image as Debian packages of the stack.
//!
//! A Python extension compiled in the build image against `libpq-dev` needs `libpq.so.5`;
//! the `python` run image has no libpq, so the image would fail at `import psycopg2`. After
//! the build, kiln reads every ELF file of the launch layers and the app (see [`scan`]: the
//! regular files that are executable or named like a library, never through a link, with
//! bounded reads, for the run image's architecture only) and looks each `DT_NEEDED` soname
//! up where the loader would: the file's `RUNPATH`/`RPATH` (`$ORIGIN` is the file's
//! directory, so a wheel's `*.libs/` is found), the `LD_LIBRARY_PATH` of the launch
//! environment (the launch layers' `lib/` directories and what their env files set), and
//! the run image's library directories (`/lib/<triplet>`, `/usr/lib/<triplet>`, `/lib`,
//! `/usr/lib`, and `/usr/local/lib` when the image has an `ld.so.cache` listing
//! `ld.so.conf.d`'s directories) — all resolved inside the image to be, links followed
//! within it. A file of musl's (its loader is `ld-musl-*`) is skipped: it cannot run on a
//! glibc image whatever is added.
//!
//! Each soname still missing is mapped to the Debian package that declares it, in the lock
//! of the stack's build flavour the buildpacks ran in (the `build` flavour's when they ran
//! on the host or in an image of the user's), and that package with what it depends on and
//! the run image lacks becomes one layer right after the run image's layers
//! ([`crate::stack::native`]). The log has a line per package and the image the labels
//! [`NATIVE_PACKAGES`] and [`NATIVE_LIBRARIES`]. A soname no package declares fails the
//! export ([`ExportError::LibraryMissing`], exit code 53), naming the file and the library.
//! On a run image kiln did not build from a stack (no `io.github.kiln-build.stack.packages`
//! label), nothing can be added: missing libraries are warnings.
//!
//! A launch layer reused from the previous image has no contents to read: the libraries
//! the previous image recorded for files in it are looked up again.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::elf::{ElfNeeds, machine_of, read_needs};
use super::launch_check::{Found, ImageFiles, Node};
use super::{ExportContext, ExportError, launch_env};
use crate::buildenv::{APP_DIR, LAYERS_DIR};
use crate::event::Event;
use crate::labels::{NATIVE_LIBRARIES, NATIVE_PACKAGES};
use crate::layer::LayerBlob;
use crate::stack::StackSource;

/// Files larger than this are not read (no shared library or program is).
const MAX_ELF_BYTES: u64 = 4 << 30;
/// Problems listed in one error before "and N more".
const MAX_LISTED: usize = 10;

/// An ELF file of the image and what it needs.
#[derive(Debug, Clone)]
struct ElfFile {
    /// Its absolute path in the image.
    guest: String,
    needs: ElfNeeds,
}

/// A library a file of the image needs and the image lacks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct NeededLibrary {
    /// The soname (or the loader's file name).
    pub library: String,
    /// The file that needs it, by its path in the image.
    pub needed_by: String,
    /// The package that provides it, once mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

/// The layer of native libraries and what describes it.
pub(crate) struct NativeLayer {
    /// The layer.
    pub blob: LayerBlob,
    /// Its history line.
    pub created_by: String,
    /// Its report name.
    pub name: String,
    /// Labels to set.
    pub labels: Vec<(String, String)>,
}

/// Finds what the image's ELF files miss and makes the layer that adds it (see the module
/// docs). `None` when nothing is missing or nothing can be added.
pub(super) fn native_libraries(
    ctx: &ExportContext<'_>,
    files: &ImageFiles,
) -> Result<Option<NativeLayer>, ExportError> {
    let arch = ctx.run_image.platform.architecture.as_str();
    let Some((machine, is_64, triplet)) = machine_of(arch) else {
        ctx.events.event(&Event::Info(format!(
            "native libraries: kiln does not know {arch}'s ELF machine; not checked"
        )));
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    let mut reused: Vec<String> = Vec::new();
    for output in &ctx.build.buildpacks {
        let escaped = output.buildpack.id().escaped();
        for layer in output.layers.iter().filter(|l| l.types.launch) {
            let guest = format!("{LAYERS_DIR}/{escaped}/{}", layer.name);
            match &layer.dir {
                Some(dir) => roots.push((guest, dir.clone())),
                None => reused.push(format!("{guest}/")),
            }
        }
    }
    roots.push((APP_DIR.to_string(), ctx.app_dir.to_path_buf()));
    let scanned = scan(&roots, ctx.events);
    let (elfs, musl): (Vec<ElfFile>, Vec<ElfFile>) = scanned
        .into_iter()
        .filter(|f| f.needs.machine == machine && f.needs.is_64 == is_64)
        .partition(|f| !is_musl(&f.needs));
    if !musl.is_empty() {
        ctx.events.event(&Event::Info(format!(
            "native libraries: {} file(s) built for musl skipped (e.g. {})",
            musl.len(),
            musl[0].guest
        )));
    }
    let library_path = launch_library_path(ctx)?;
    let search = SearchPath::new(files, triplet, &library_path);
    let mut missing = missing_libraries(files, &elfs, &search, ctx.events);
    // Launch layers reused from the previous image: what it recorded for their files.
    for entry in previous_libraries(ctx) {
        if reused.iter().any(|dir| entry.needed_by.starts_with(dir))
            && !search.finds(files, &entry.library, &[])
        {
            missing.push(NeededLibrary {
                package: None,
                ..entry
            });
        }
    }
    missing.sort();
    missing.dedup();
    ctx.events.event(&Event::Info(format!(
        "native libraries: {} ELF file(s) read, {} missing librar(ies), in {} ms",
        elfs.len(),
        missing
            .iter()
            .map(|m| &m.library)
            .collect::<BTreeSet<_>>()
            .len(),
        started.elapsed().as_millis()
    )));
    if missing.is_empty() {
        return Ok(None);
    }
    add_packages(ctx, missing)
}

/// The run image's labels (none when kiln has no config of it).
pub(super) fn run_image_labels(
    ctx: &ExportContext<'_>,
) -> std::collections::HashMap<String, String> {
    ctx.run_image
        .image
        .as_ref()
        .and_then(|i| i.config.config().as_ref())
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
}

/// Maps `missing` to packages and makes their layer.
fn add_packages(
    ctx: &ExportContext<'_>,
    mut missing: Vec<NeededLibrary>,
) -> Result<Option<NativeLayer>, ExportError> {
    let run_labels = run_image_labels(ctx);
    let (Some(stack_label), Some(packages_label)) = (
        run_labels.get(crate::labels::STACK),
        run_labels.get(crate::labels::STACK_PACKAGES),
    ) else {
        for m in &missing {
            ctx.events.event(&Event::Warning(format!(
                "{} needs {}, which the run image {} lacks; kiln adds Debian packages only to run images of its stacks, so add the library to the run image or to a launch layer",
                m.needed_by,
                m.library,
                ctx.run_image.label_name()
            )));
        }
        return Ok(None);
    };
    let stack_name = stack_label.split('/').next().unwrap_or_default();
    let source = open_stack(ctx.stack, stack_name).map_err(ExportError::NativePackages)?;
    let def = source.definition().map_err(ExportError::NativePackages)?;
    let flavour = build_flavour(ctx.build_image, stack_name, &def);
    let run_packages: BTreeMap<String, String> = packages_label
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let sonames: BTreeSet<String> = missing.iter().map(|m| m.library.clone()).collect();
    let from = crate::stack::native::PackageSource {
        source: &source,
        flavour: &flavour,
        arch: &ctx.run_image.platform.architecture,
    };
    let resolution = crate::stack::native::resolve_libraries(
        ctx.store,
        &from,
        &run_packages,
        &sonames,
        ctx.events,
        ctx.cancel,
    )
    .map_err(ExportError::NativePackages)?;
    if !resolution.unmapped.is_empty() {
        return Err(unmapped_error(
            ctx,
            &missing,
            &resolution.unmapped,
            &def,
            flavour,
        ));
    }
    for (soname, package) in &resolution.in_run_image {
        ctx.events.event(&Event::Warning(format!(
            "{soname} comes from Debian package {package}, which the run image has, but the loader does not find it where the files that need it look"
        )));
    }
    missing.retain(|m| resolution.providers.contains_key(&m.library));
    if missing.is_empty() {
        return Ok(None);
    }
    for m in &mut missing {
        m.package = resolution.providers.get(&m.library).map(|p| p.name.clone());
    }
    let providers = log_packages(ctx, &missing, &resolution);
    let blob = crate::stack::native::packages_layer_for(
        ctx.store,
        &source,
        &resolution.install,
        ctx.events,
        ctx.cancel,
    )
    .map_err(ExportError::NativePackages)?;
    let mut names: Vec<String> = resolution
        .install
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    names.sort();
    let labels = vec![
        (NATIVE_PACKAGES.to_string(), super::label_json(&names)?),
        (NATIVE_LIBRARIES.to_string(), super::label_json(&missing)?),
    ];
    Ok(Some(NativeLayer {
        blob,
        created_by: format!(
            "kiln native libraries: {} Debian packages of stack {} ({})",
            names.len(),
            def.stack.name,
            providers.into_iter().collect::<Vec<_>>().join(", ")
        ),
        name: "native libraries".to_string(),
        labels,
    }))
}

/// The error for libraries no package declares, naming each file and library.
fn unmapped_error(
    ctx: &ExportContext<'_>,
    missing: &[NeededLibrary],
    unmapped: &[String],
    def: &crate::stack::StackDefinition,
    flavour: String,
) -> ExportError {
    let unmapped: Vec<&NeededLibrary> = missing
        .iter()
        .filter(|m| unmapped.contains(&m.library))
        .collect();
    let mut problems: Vec<String> = unmapped
        .iter()
        .take(MAX_LISTED)
        .map(|m| format!("{} needs {}", m.needed_by, m.library))
        .collect();
    if unmapped.len() > MAX_LISTED {
        problems.push(format!("and {} more", unmapped.len() - MAX_LISTED));
    }
    ExportError::LibraryMissing {
        problems,
        stack: def.stack.name.to_string(),
        flavour,
        run_image: ctx.run_image.label_name(),
    }
}

/// Logs a line per package to install: for which library and file, or as a dependency.
/// Returns the names of the packages that provide the libraries.
fn log_packages<'a>(
    ctx: &ExportContext<'_>,
    missing: &[NeededLibrary],
    resolution: &'a crate::stack::native::Resolution,
) -> BTreeSet<&'a str> {
    let providers: BTreeSet<&str> = resolution
        .providers
        .values()
        .map(|p| p.name.as_str())
        .collect();
    for package in &resolution.install {
        let needs: Vec<&NeededLibrary> = missing
            .iter()
            .filter(|m| m.package.as_deref() == Some(package.name.as_str()))
            .collect();
        let why = if let Some(first) = needs.first() {
            let libraries: BTreeSet<&str> = needs.iter().map(|m| m.library.as_str()).collect();
            let more = if needs.len() > 1 {
                format!(" and {} more", needs.len() - 1)
            } else {
                String::new()
            };
            format!(
                "for {} (needed by {}{more})",
                libraries.into_iter().collect::<Vec<_>>().join(", "),
                first.needed_by
            )
        } else {
            "(a dependency)".to_string()
        };
        ctx.events.event(&Event::Step(format!(
            "Native libraries: {} {} {why}",
            package.name, package.version
        )));
    }
    providers
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

/// The build flavour whose lock the packages come from: the one the buildpacks ran in when
/// it is the stack's (`kiln/stacks/trixie-build-python:latest@sha256:…`), else `build`.
fn build_flavour(
    build_image: Option<&str>,
    stack: &str,
    def: &crate::stack::StackDefinition,
) -> String {
    build_image
        .and_then(|image| image.strip_prefix("kiln/stacks/"))
        .map(|rest| rest.split(['@', ':']).next().unwrap_or_default())
        .and_then(|name| name.strip_prefix(stack)?.strip_prefix('-'))
        .filter(|flavour| def.flavours.keys().any(|f| f.as_str() == *flavour))
        .unwrap_or("build")
        .to_string()
}

/// What the previous image recorded in [`NATIVE_LIBRARIES`].
fn previous_libraries(ctx: &ExportContext<'_>) -> Vec<NeededLibrary> {
    ctx.previous
        .and_then(|p| p.config.config().as_ref())
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(NATIVE_LIBRARIES))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The `LD_LIBRARY_PATH` directories of every process's launch environment.
fn launch_library_path(ctx: &ExportContext<'_>) -> Result<Vec<String>, ExportError> {
    let mut dirs: Vec<String> = Vec::new();
    let processes = ctx.build.processes.list();
    let mut envs = vec![launch_env(ctx, None)?];
    for process in &processes {
        envs.push(launch_env(ctx, Some(process))?);
    }
    for env in &envs {
        for dir in env.get("LD_LIBRARY_PATH").split(':') {
            if dir.starts_with('/') && !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_string());
            }
        }
    }
    Ok(dirs)
}

/// Whether the file is for musl's loader: it names it, or needs musl's C library, whose
/// soname is `libc.so` (glibc's is `libc.so.6`) — as the `*-musl.node` builds of native npm
/// packages that npm installs next to the glibc ones do.
fn is_musl(needs: &ElfNeeds) -> bool {
    needs
        .interpreter
        .as_deref()
        .is_some_and(|i| i.contains("ld-musl"))
        || needs
            .needed
            .iter()
            .any(|n| n.starts_with("libc.musl") || n == "libc.so")
}

/// The ELF files under each `(guest, host)` root: regular files that are executable or
/// named like a shared library (`*.so*`, Node.js's `*.node`), walked without following
/// links and opened without following one, sorted by path. Unreadable files are skipped.
fn scan(roots: &[(String, PathBuf)], events: &dyn crate::event::EventSink) -> Vec<ElfFile> {
    let mut out = Vec::new();
    for (guest, host) in roots {
        for entry in walkdir::WalkDir::new(host)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy();
            let candidate = meta.permissions().mode() & 0o111 != 0
                || name.contains(".so")
                || name.ends_with(".node");
            if !candidate || meta.len() < 52 || meta.len() > MAX_ELF_BYTES {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(host) else {
                continue;
            };
            let path = format!("{guest}/{}", rel.to_string_lossy());
            let file =
                match crate::untrusted::open_regular(entry.path(), crate::untrusted::Links::Refuse)
                {
                    Ok(file) => file,
                    Err(e) => {
                        events.event(&Event::Info(format!(
                            "native libraries: {path} skipped: {e}"
                        )));
                        continue;
                    }
                };
            match read_needs(&file) {
                Ok(Some(needs)) => out.push(ElfFile { guest: path, needs }),
                Ok(None) => {}
                Err(e) => {
                    events.event(&Event::Info(format!(
                        "native libraries: {path} skipped: {e}"
                    )));
                }
            }
        }
    }
    out
}

/// Where the loader looks for every file: `LD_LIBRARY_PATH`, then the default directories.
struct SearchPath {
    common: Vec<String>,
    /// The Debian multiarch triplet (`x86_64-linux-gnu`).
    triplet: String,
}

impl SearchPath {
    fn new(files: &ImageFiles, triplet: &str, library_path: &[String]) -> Self {
        let mut common: Vec<String> = library_path.to_vec();
        // kiln's run images have no ld.so.cache (ldconfig never runs), so the loader reads
        // no ld.so.conf: only its built-in directories. An image with a cache also has
        // Debian's ld.so.conf.d directories.
        if matches!(
            files.resolve("/", "/etc/ld.so.cache"),
            Found::Node(_, Node::File { .. })
        ) {
            common.push(format!("/usr/local/lib/{triplet}"));
            common.push("/usr/local/lib".to_string());
        }
        for dir in [
            format!("/lib/{triplet}"),
            format!("/usr/lib/{triplet}"),
            "/lib".to_string(),
            "/usr/lib".to_string(),
            "/lib64".to_string(),
            "/usr/lib64".to_string(),
        ] {
            common.push(dir);
        }
        Self {
            common,
            triplet: triplet.to_string(),
        }
    }

    /// Whether `library` resolves to a file in one of `own` (the file's run paths) or the
    /// common directories; a path in a part of the image kiln cannot see counts as found.
    fn finds(&self, files: &ImageFiles, library: &str, own: &[String]) -> bool {
        if library.contains('/') {
            return found(&files.resolve(APP_DIR, library));
        }
        own.iter()
            .chain(&self.common)
            .any(|dir| found(&files.resolve(APP_DIR, &format!("{dir}/{library}"))))
    }
}

fn found(result: &Found) -> bool {
    matches!(result, Found::Unknown | Found::Node(_, Node::File { .. }))
}

/// The run paths of `file` with `$ORIGIN` (the file's directory) expanded; `$LIB` and
/// `$PLATFORM` are tried as the loader's usual values.
fn run_paths(file: &ElfFile, triplet: &str) -> Vec<String> {
    let origin = Path::new(&file.guest)
        .parent()
        .map_or_else(|| "/".to_string(), |p| p.to_string_lossy().into_owned());
    let mut out = Vec::new();
    for dir in file.needs.rpath.iter().chain(&file.needs.runpath) {
        let dir = dir
            .replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin);
        if dir.contains("$LIB") || dir.contains("${LIB}") {
            for lib in ["lib", "lib64", &format!("lib/{triplet}")] {
                out.push(dir.replace("${LIB}", lib).replace("$LIB", lib));
            }
        } else {
            out.push(dir);
        }
    }
    out
}

/// The libraries `elfs` need that the image does not have where the loader looks.
fn missing_libraries(
    files: &ImageFiles,
    elfs: &[ElfFile],
    search: &SearchPath,
    events: &dyn crate::event::EventSink,
) -> Vec<NeededLibrary> {
    // Libraries the app itself ships, by soname and file name.
    let shipped: BTreeMap<&str, &str> = elfs
        .iter()
        .flat_map(|f| {
            let name = f.guest.rsplit('/').next().unwrap_or_default();
            f.needs
                .soname
                .as_deref()
                .into_iter()
                .chain([name])
                .map(|n| (n, f.guest.as_str()))
        })
        .collect();
    let mut missing = Vec::new();
    for file in elfs {
        let own = run_paths(file, &search.triplet);
        if let Some(interpreter) = &file.needs.interpreter
            && !search.finds(files, interpreter, &[])
        {
            missing.push(NeededLibrary {
                library: interpreter
                    .rsplit('/')
                    .next()
                    .unwrap_or(interpreter)
                    .to_string(),
                needed_by: file.guest.clone(),
                package: None,
            });
        }
        for library in &file.needs.needed {
            if search.finds(files, library, &own) {
                continue;
            }
            if let Some(at) = shipped.get(library.as_str()) {
                events.event(&Event::Warning(format!(
                    "{} needs {library}, which is at {at} but not where the loader looks (its RUNPATH, LD_LIBRARY_PATH, the system directories); it works only if the program loads {at} first",
                    file.guest
                )));
                continue;
            }
            missing.push(NeededLibrary {
                library: library.clone(),
                needed_by: file.guest.clone(),
                package: None,
            });
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::launch_check::LayerEntry;
    use super::*;

    /// Runs the system C compiler; `false` (the test is skipped) when there is none.
    fn cc(args: &[&str], dir: &Path) -> bool {
        match Command::new("cc").args(args).current_dir(dir).output() {
            Ok(out) if out.status.success() => true,
            Ok(out) => panic!("cc {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
            Err(_) => {
                eprintln!("no cc: skipped");
                false
            }
        }
    }

    fn run_image(triplet: &str) -> ImageFiles {
        let mut files = ImageFiles::default();
        let file = Node::File {
            executable: false,
            shebang: None,
        };
        files.add_layer(&[
            LayerEntry::Node("lib".into(), Node::Link("usr/lib".into())),
            LayerEntry::Node(format!("usr/lib/{triplet}/libc.so.6"), file.clone()),
            LayerEntry::Node(
                format!("usr/lib/{triplet}/libm.so.6"),
                Node::Link("libm-2.so".into()),
            ),
            LayerEntry::Node(format!("usr/lib/{triplet}/libm-2.so"), file),
        ]);
        files
    }

    /// Builds the fixture of [`sonames_resolve_like_the_loader_and_the_rest_is_missing`]
    /// under `tmp`: the wheel-like layer and the layer with a `lib/`; `None` without cc.
    fn wheel_fixture(tmp: &Path) -> Option<(PathBuf, PathBuf)> {
        let src = tmp.join("src");
        let layer = tmp.join("packages");
        let libs = layer.join("site/pkg.libs");
        let lib_layer = tmp.join("runtime");
        for dir in [&src, &libs, &lib_layer.join("lib"), &layer.join("site/pkg")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        // A shared library with `soname`, from one function, written to `out`.
        let shared = |function: &str, soname: &str, out: &Path| {
            let c = src.join(format!("{function}.c"));
            std::fs::write(&c, format!("int {function}(void) {{ return 1; }}\n")).unwrap();
            cc(
                &[
                    "-shared",
                    "-fPIC",
                    &format!("-Wl,-soname,{soname}"),
                    "-o",
                    out.to_str().unwrap(),
                    c.to_str().unwrap(),
                ],
                &src,
            )
        };
        let libs_arg = libs.join("libhere-1a2b.so.1");
        let env_lib = lib_layer.join("lib/libviaenv.so.3");
        if !shared("answer", "libhere-1a2b.so.1", &libs_arg) {
            return None;
        }
        assert!(shared("env_answer", "libviaenv.so.3", &env_lib));
        // A library only the build had: linked against, never shipped.
        assert!(shared("gone", "libgone.so.7", &src.join("libgone.so")));
        std::fs::write(
            src.join("ext.c"),
            "#include <math.h>\nint answer(void); int env_answer(void); int gone(void);\n\
             double f(double x) { return sqrt(x) + answer() + env_answer() + gone(); }\n",
        )
        .unwrap();
        let ext = layer.join("site/pkg/_ext.cpython-313.so");
        assert!(cc(
            &[
                "-shared",
                "-fPIC",
                "-o",
                ext.to_str().unwrap(),
                "ext.c",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../pkg.libs",
                libs_arg.to_str().unwrap(),
                env_lib.to_str().unwrap(),
                "-L.",
                "-lgone",
                "-lm",
            ],
            &src
        ));
        // Not ELF, and a link to a host library: neither is read.
        std::fs::write(layer.join("site/pkg/data.so.txt"), "not an ELF file").unwrap();
        std::os::unix::fs::symlink("/proc/self/exe", layer.join("site/pkg/host.so")).unwrap();

        Some((layer, lib_layer))
    }

    /// A wheel-like layer: an extension module that needs a library of its own `*.libs/`
    /// (through `$ORIGIN`), one of a launch layer's `lib/`, the run image's libc and libm
    /// (through a link), and one that is nowhere.
    #[test]
    fn sonames_resolve_like_the_loader_and_the_rest_is_missing() {
        let arch = crate::image::TargetPlatform::host().architecture;
        let Some((machine, is_64, triplet)) = machine_of(&arch) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let Some((layer, lib_layer)) = wheel_fixture(tmp.path()) else {
            return;
        };
        let mut files = run_image(triplet);
        files.mount_host("/layers/bp/packages", &layer);
        files.mount_host("/layers/bp/runtime", &lib_layer);
        let events = |_: &Event| {};
        let elfs: Vec<ElfFile> = scan(
            &[
                ("/layers/bp/packages".to_string(), layer.clone()),
                ("/layers/bp/runtime".to_string(), lib_layer.clone()),
            ],
            &events,
        );
        let names: Vec<&str> = elfs.iter().map(|e| e.guest.as_str()).collect();
        assert_eq!(
            names,
            [
                "/layers/bp/packages/site/pkg/_ext.cpython-313.so",
                "/layers/bp/packages/site/pkg.libs/libhere-1a2b.so.1",
                "/layers/bp/runtime/lib/libviaenv.so.3",
            ]
        );
        assert!(
            elfs.iter()
                .all(|e| e.needs.machine == machine && e.needs.is_64 == is_64)
        );
        let ext_needs = &elfs[0].needs;
        assert_eq!(ext_needs.runpath, ["$ORIGIN/../pkg.libs"], "{ext_needs:?}");
        // Without LD_LIBRARY_PATH, the launch layer's lib/ is not searched.
        let search = SearchPath::new(&files, triplet, &[]);
        let missing: BTreeSet<String> = missing_libraries(&files, &elfs, &search, &events)
            .into_iter()
            .map(|m| format!("{} {}", m.library, m.needed_by))
            .collect();
        assert!(
            missing.contains("libgone.so.7 /layers/bp/packages/site/pkg/_ext.cpython-313.so"),
            "{missing:?}"
        );
        assert!(
            !missing.iter().any(|m| m.starts_with("libhere")
                || m.starts_with("libc.")
                || m.starts_with("libm.")),
            "{missing:?}"
        );
        // libviaenv.so.3 is shipped, though not on the search path: a warning, not missing.
        assert!(
            !missing.iter().any(|m| m.starts_with("libviaenv")),
            "{missing:?}"
        );
        let search = SearchPath::new(&files, triplet, &["/layers/bp/runtime/lib".to_string()]);
        let missing = missing_libraries(&files, &elfs, &search, &events);
        assert_eq!(
            missing
                .iter()
                .map(|m| m.library.as_str())
                .collect::<Vec<_>>(),
            ["libgone.so.7"]
        );
    }

    #[test]
    fn musl_files_are_told_apart() {
        let musl = ElfNeeds {
            interpreter: Some("/lib/ld-musl-x86_64.so.1".into()),
            ..ElfNeeds::default()
        };
        assert!(is_musl(&musl));
        let needs_musl = ElfNeeds {
            needed: vec!["libc.musl-x86_64.so.1".into()],
            ..ElfNeeds::default()
        };
        assert!(is_musl(&needs_musl));
        // rollup.linux-x64-musl.node, as npm installs it beside the glibc build.
        assert!(is_musl(&ElfNeeds {
            needed: vec!["libgcc_s.so.1".into(), "libc.so".into()],
            ..ElfNeeds::default()
        }));
        assert!(!is_musl(&ElfNeeds {
            needed: vec!["libc.so.6".into()],
            ..ElfNeeds::default()
        }));
    }

    #[test]
    fn origin_and_lib_expand_relative_to_the_file() {
        let file = ElfFile {
            guest: "/layers/bp/pkgs/lib/python3.13/site-packages/numpy/core/_m.so".into(),
            needs: ElfNeeds {
                runpath: vec!["$ORIGIN/../../numpy.libs".into(), "/opt/${LIB}".into()],
                rpath: vec!["${ORIGIN}".into()],
                ..ElfNeeds::default()
            },
        };
        assert_eq!(
            run_paths(&file, "x86_64-linux-gnu"),
            [
                "/layers/bp/pkgs/lib/python3.13/site-packages/numpy/core",
                "/layers/bp/pkgs/lib/python3.13/site-packages/numpy/core/../../numpy.libs",
                "/opt/lib",
                "/opt/lib64",
                "/opt/lib/x86_64-linux-gnu",
            ]
        );
    }

    #[test]
    fn the_build_flavour_comes_from_the_build_image_label() {
        let source = StackSource::open("trixie").unwrap();
        let def = source.definition().unwrap();
        let flavour = |image| build_flavour(image, "trixie", &def);
        assert_eq!(
            flavour(Some("kiln/stacks/trixie-build-python:latest@sha256:00")),
            "build-python"
        );
        assert_eq!(
            flavour(Some("kiln/stacks/trixie-build-go@sha256:00")),
            "build-go"
        );
        assert_eq!(flavour(Some("registry.example/mine:1@sha256:00")), "build");
        assert_eq!(
            flavour(Some("kiln/stacks/bookworm-build-python:latest")),
            "build"
        );
        assert_eq!(flavour(None), "build");
    }
}
