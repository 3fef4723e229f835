//! Short explanations of well-known build tool failures. When pip, npm, go or cargo fails,
//! its own output has already gone to the build log; the buildpack's error then adds one
//! hint: the file to look at, the likely cause and the setting that changes it.

/// A build tool whose failures kiln knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// pip (`python3 -m pip`) or uv: Python's installers.
    Pip,
    /// npm, Yarn, pnpm or Bun.
    Npm,
    /// The Go command.
    Go,
    /// Cargo.
    Cargo,
}

impl Tool {
    /// The tool a command runs: its program, or `python3 -m pip`.
    pub(crate) fn of(program: &str, args: &[String]) -> Option<Self> {
        let name = program.rsplit('/').next().unwrap_or(program);
        match name {
            "npm" | "yarn" | "pnpm" | "bun" | "corepack" => Some(Self::Npm),
            "go" => Some(Self::Go),
            "cargo" => Some(Self::Cargo),
            _ if name.starts_with("python") && args.iter().any(|a| a == "pip") => Some(Self::Pip),
            "pip" | "pip3" | "uv" => Some(Self::Pip),
            _ => None,
        }
    }
}

/// One well-known failure: output containing every one of `needles` means `hint`.
struct Pattern {
    tool: Tool,
    needles: &'static [&'static str],
    hint: &'static str,
}

/// The table, per tool, most specific first.
const PATTERNS: &[Pattern] = &[
    Pattern {
        tool: Tool::Pip,
        needles: &["Failed to establish a new connection"],
        hint: "pip could not reach the package index: check the index URL (PIP_INDEX_URL) and that the build host can reach it (HTTPS_PROXY, firewall)",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["Failed to fetch", "error sending request"],
        hint: "uv could not reach the package index: check the index URL (PIP_INDEX_URL or UV_DEFAULT_INDEX) and that the build host can reach it (HTTPS_PROXY, firewall)",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["was not found in the package registry"],
        hint: "the package index has no package of that name: check the name in requirements.txt (or pyproject.toml, or the lockfile), and the index kiln uses (kiln build --env PIP_INDEX_URL=URL, PIP_EXTRA_INDEX_URL for a second index; or UV_DEFAULT_INDEX, UV_INDEX)",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["there is no version of"],
        hint: "the package index has no release of that package matching the version asked for, for the run image's Python and platform: check the name and version in requirements.txt (or pyproject.toml, or the lockfile), and the index kiln uses (kiln build --env PIP_INDEX_URL=URL, PIP_EXTRA_INDEX_URL for a second index; or UV_DEFAULT_INDEX, UV_INDEX)",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["Hash mismatch"],
        hint: "a downloaded file does not have the hash the lockfile records: regenerate the lockfile (poetry lock, pipenv lock, uv lock, pip-compile --generate-hashes) and check that the index serves the same files",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["we can conclude that your requirements are unsatisfiable"],
        hint: "the requirements ask for versions that cannot all hold (or for the run image's Python and platform): loosen one of the pins in requirements.txt or pyproject.toml",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["No matching distribution found for"],
        hint: "the package index has no release of that package matching the version asked for, for the run image's Python and platform: check the name and version in requirements.txt (or pyproject.toml, or the lockfile), and the index pip uses (kiln build --env PIP_INDEX_URL=URL, PIP_EXTRA_INDEX_URL for a second index)",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["THESE PACKAGES DO NOT MATCH THE HASHES"],
        hint: "a downloaded file does not have the hash the lockfile records: regenerate the lockfile (poetry lock, pipenv lock, uv lock, pip-compile --generate-hashes) and check that PIP_INDEX_URL serves the same files",
    },
    Pattern {
        tool: Tool::Pip,
        needles: &["ResolutionImpossible"],
        hint: "two requirements ask for versions of a package that cannot both hold: loosen one of the pins in requirements.txt or pyproject.toml",
    },
    Pattern {
        tool: Tool::Npm,
        needles: &["ERESOLVE"],
        hint: "npm cannot reconcile the peer dependencies in package.json with package-lock.json, which is probably out of date: run `npm install` and commit package-lock.json (or set legacy-peer-deps=true in .npmrc if the conflict is known and harmless)",
    },
    Pattern {
        tool: Tool::Npm,
        needles: &["can only install packages when your package.json and package-lock.json"],
        hint: "package-lock.json does not match package.json: run `npm install` and commit package-lock.json",
    },
    Pattern {
        tool: Tool::Npm,
        needles: &["frozen-lockfile"],
        hint: "the lockfile is out of date with package.json: run the install with your package manager and commit the lockfile",
    },
    Pattern {
        tool: Tool::Npm,
        needles: &["E404"],
        hint: "the registry has no package or version of that name: check package.json, and the registry setting (npm_config_registry, or registry= in .npmrc) for private packages",
    },
    Pattern {
        tool: Tool::Npm,
        needles: &["gyp ERR!"],
        hint: "a package with a native addon failed to compile with node-gyp: it needs python3, make and a C++ compiler on the build host (Debian: apt-get install python3 make g++), or a version of the package with prebuilt binaries",
    },
    Pattern {
        tool: Tool::Go,
        needles: &["missing go.sum entry"],
        hint: "go.sum lacks a checksum go.mod needs: run `go mod tidy` and commit go.sum",
    },
    Pattern {
        tool: Tool::Go,
        needles: &["updates to go.mod needed"],
        hint: "go.mod is not tidy: run `go mod tidy` and commit go.mod and go.sum",
    },
    Pattern {
        tool: Tool::Go,
        needles: &["SECURITY ERROR"],
        hint: "a module's download does not match go.sum: check go.sum, and GOPROXY / GONOSUMDB / GOPRIVATE for private modules",
    },
    Pattern {
        tool: Tool::Go,
        needles: &["requires go >="],
        hint: "go.mod asks for a newer Go than the build host's: lower the `go` line in go.mod or install a newer Go on the build host",
    },
    Pattern {
        tool: Tool::Cargo,
        needles: &["needs to be updated but --locked was passed"],
        hint: "Cargo.lock is out of date with Cargo.toml: run `cargo update --workspace` (or any cargo build) and commit Cargo.lock",
    },
    Pattern {
        tool: Tool::Cargo,
        needles: &["Could not find `pkg-config`"],
        hint: "a crate's build script needs pkg-config on the build host to find a system library (Debian: apt-get install pkg-config, plus the library's -dev package)",
    },
    Pattern {
        tool: Tool::Cargo,
        needles: &["linker `cc` not found"],
        hint: "the build host has no C linker: install one (Debian: apt-get install gcc)",
    },
];

/// Debian packages that provide common headers of native builds.
const HEADER_PACKAGES: &[(&str, &str)] = &[
    ("Python.h", "python3-dev"),
    ("ffi.h", "libffi-dev"),
    ("libpq-fe.h", "libpq-dev"),
    ("pg_config.h", "libpq-dev"),
    ("mysql.h", "default-libmysqlclient-dev"),
    ("openssl/ssl.h", "libssl-dev"),
    ("openssl/opensslv.h", "libssl-dev"),
    ("zlib.h", "zlib1g-dev"),
    ("sqlite3.h", "libsqlite3-dev"),
    ("jpeglib.h", "libjpeg-dev"),
    ("png.h", "libpng-dev"),
    ("libxml/xmlversion.h", "libxml2-dev"),
    ("libxslt/xslt.h", "libxslt1-dev"),
    ("yaml.h", "libyaml-dev"),
    ("gmp.h", "libgmp-dev"),
    ("krb5.h", "libkrb5-dev"),
    ("ldap.h", "libldap2-dev"),
    ("sasl/sasl.h", "libsasl2-dev"),
    ("vips/vips8", "libvips-dev"),
];

/// A missing header (`fatal error: libpq-fe.h: No such file or directory`), whichever tool
/// compiled it.
fn missing_header(output: &[String]) -> Option<String> {
    let line = output
        .iter()
        .find(|l| l.contains("fatal error:") && l.contains("No such file or directory"))?;
    let after = &line[line.find("fatal error:")? + "fatal error:".len()..];
    let header = after
        .split(':')
        .next()?
        .trim()
        .trim_matches(['\'', '"', '<', '>']);
    if header.is_empty() {
        return None;
    }
    let package = HEADER_PACKAGES
        .iter()
        .find(|(h, _)| header == *h || header.ends_with(&format!("/{h}")))
        .map(|(_, p)| *p);
    Some(match package {
        Some(package) => format!(
            "a native extension needs the C header {header}, which the build host lacks: install its development package (Debian: apt-get install {package}), or use a release of the dependency with prebuilt binaries"
        ),
        None => format!(
            "a native extension needs the C header {header}, which the build host lacks: install the -dev package that provides it (Debian: apt-file search {header}), or use a release of the dependency with prebuilt binaries"
        ),
    })
}

/// A system library a build script could not find through pkg-config
/// (`The system library `openssl` required by crate `openssl-sys` was not found`).
fn missing_system_library(output: &[String]) -> Option<String> {
    let line = output
        .iter()
        .find(|l| l.contains("The system library `") && l.contains("was not found"))?;
    let rest = &line[line.find("The system library `")? + "The system library `".len()..];
    let library = rest.split('`').next()?;
    let package = match library {
        "openssl" => "libssl-dev".to_string(),
        "sqlite3" => "libsqlite3-dev".to_string(),
        "libpq" => "libpq-dev".to_string(),
        "zlib" => "zlib1g-dev".to_string(),
        other => format!("lib{}-dev", other.trim_start_matches("lib")),
    };
    Some(format!(
        "a crate links the system library {library}, which the build host lacks: install its development package (Debian: apt-get install {package}, most likely) and pkg-config"
    ))
}

/// The hint for `tool`'s failure, from the last lines of its output.
pub(crate) fn hint(tool: Tool, output: &[String]) -> Option<String> {
    if let Some(hint) = missing_header(output) {
        return Some(hint);
    }
    if tool == Tool::Cargo
        && let Some(hint) = missing_system_library(output)
    {
        return Some(hint);
    }
    PATTERNS
        .iter()
        .filter(|p| p.tool == tool)
        .find(|p| {
            p.needles
                .iter()
                .all(|needle| output.iter().any(|line| line.contains(needle)))
        })
        .map(|p| p.hint.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn uv_failures() {
        assert_eq!(
            Tool::of("/layers/kiln_python/uv/tool/bin/uv", &[]),
            Some(Tool::Pip)
        );
        let missing = lines(
            "error: No solution found when resolving dependencies\n  cause: Because flask was not found in the package registry and you require flask==9.9.9, we can conclude that your requirements are unsatisfiable.",
        );
        assert!(hint_contains(
            Tool::Pip,
            &missing,
            "no package of that name"
        ));
        let no_version = lines(
            "  cause: Because there is no version of flask==9.9.9 and you require flask==9.9.9, we can conclude that your requirements are unsatisfiable.",
        );
        assert!(hint_contains(
            Tool::Pip,
            &no_version,
            "no release of that package"
        ));
        let conflict = lines(
            "  cause: Because a==1 depends on b<2 and you require b==3, we can conclude that your requirements are unsatisfiable.",
        );
        assert!(hint_contains(Tool::Pip, &conflict, "cannot all hold"));
        let offline = lines(
            "error: Request failed after 3 retries\n  cause: Failed to fetch: http://127.0.0.1:9/simple/flask/\n  cause: error sending request for url (http://127.0.0.1:9/simple/flask/)",
        );
        assert!(hint_contains(
            Tool::Pip,
            &offline,
            "could not reach the package index"
        ));
    }

    #[test]
    fn pip_failures() {
        let out = lines(
            "Looking in indexes: https://mirror.example/simple\nERROR: Could not find a version that satisfies the requirement flask==9.9 (from versions: 2.0.0, 3.0.3)\nERROR: No matching distribution found for flask==9.9",
        );
        let text = hint(Tool::Pip, &out).unwrap();
        assert!(text.contains("requirements.txt"), "{text}");
        assert!(text.contains("PIP_INDEX_URL"), "{text}");
        let out = lines(
            "      psycopg/pq/pq.c:1:10: fatal error: libpq-fe.h: No such file or directory\n      compilation terminated.",
        );
        assert!(hint_contains(Tool::Pip, &out, "apt-get install libpq-dev"));
        let out = lines("src/x.c:3:10: fatal error: lzma.h: No such file or directory");
        assert!(hint_contains(Tool::Pip, &out, "apt-file search lzma.h"));
        assert_eq!(hint(Tool::Pip, &lines("ERROR: something else")), None);
        let out = lines(
            "WARNING: Retrying after connection broken by 'NewConnectionError(Failed to establish a new connection: [Errno 111] Connection refused)'\nERROR: No matching distribution found for flask==9.9.9",
        );
        assert!(hint_contains(
            Tool::Pip,
            &out,
            "could not reach the package index"
        ));
    }

    #[test]
    fn npm_failures() {
        let out = lines(
            "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree\nnpm ERR! peer react@\"^17\" from react-dom@17.0.2",
        );
        assert!(hint_contains(
            Tool::Npm,
            &out,
            "run `npm install` and commit package-lock.json"
        ));
        let out = lines(
            "npm ERR! `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync.",
        );
        assert!(hint_contains(
            Tool::Npm,
            &out,
            "does not match package.json"
        ));
        assert!(hint_contains(
            Tool::Npm,
            &lines("npm ERR! code E404"),
            "npm_config_registry"
        ));
        assert!(hint_contains(
            Tool::Npm,
            &lines("gyp ERR! build error"),
            "g++"
        ));
    }

    #[test]
    fn go_and_cargo_failures() {
        let out =
            lines("main.go:5:2: missing go.sum entry for module providing package github.com/x/y");
        assert!(hint_contains(Tool::Go, &out, "go mod tidy"));
        let out = lines(
            "error: the lock file /workspace/Cargo.lock needs to be updated but --locked was passed to prevent this",
        );
        assert!(hint_contains(Tool::Cargo, &out, "commit Cargo.lock"));
        let out =
            lines("  The system library `openssl` required by crate `openssl-sys` was not found.");
        assert!(hint_contains(
            Tool::Cargo,
            &out,
            "apt-get install libssl-dev"
        ));
        assert!(hint_contains(
            Tool::Cargo,
            &lines("error: linker `cc` not found"),
            "gcc"
        ));
    }

    #[test]
    fn tools_are_told_by_their_command() {
        let args = |a: &[&str]| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            Tool::of("python3", &args(&["-m", "pip", "install"])),
            Some(Tool::Pip)
        );
        assert_eq!(Tool::of("python3", &args(&["main.py"])), None);
        assert_eq!(Tool::of("/usr/bin/npm", &args(&["ci"])), Some(Tool::Npm));
        assert_eq!(
            Tool::of("corepack", &args(&["pnpm", "install"])),
            Some(Tool::Npm)
        );
        assert_eq!(Tool::of("go", &[]), Some(Tool::Go));
        assert_eq!(Tool::of("cargo", &[]), Some(Tool::Cargo));
        assert_eq!(Tool::of("cp", &[]), None);
    }

    fn hint_contains(tool: Tool, out: &[String], text: &str) -> bool {
        hint(tool, out).is_some_and(|h| h.contains(text))
    }
}
