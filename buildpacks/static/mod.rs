//! `kiln/static`: a static site served by lighttpd on `$PORT` (default 8080).
//!
//! Detects a `Staticfile`, an `index.html`, or a `public/` or `dist/` directory. The site root
//! is the Staticfile's `root:`, else `public/`, else `dist/`, else the app directory. The
//! Staticfile may also say `pushstate: enabled` (unknown paths serve `index.html`, for
//! single-page apps) and `directory: visible` (directory listings).
//!
//! **A Node.js front-end project** (a `package.json` whose `build` script makes the site and
//! that starts no server; see `nodejs/frontend.rs`): kiln/static only requires the plan entry
//! `static-site` that kiln/nodejs provides when it builds such a project, and serves the
//! build's output directory (`dist/`, `build/`, `out/`, or the Staticfile's `root:`) with
//! the single-page-app fallback the project calls for. A `package.json` project that starts
//! its own server is never served by kiln/static: it fails detection, so it cannot replace
//! the server in kiln/nodejs's group.
//!
//! **`Staticfile.auth`** (the Cloud Foundry staticfile buildpack's format: `user:hash` lines
//! as `htpasswd` writes them) puts the whole site behind HTTP basic authentication, with
//! lighttpd's `mod_auth` and its `htpasswd` backend. The hashes it checks are `$apr1$`
//! (`htpasswd -m`, the default), `{SHA}` (`htpasswd -s`), bcrypt `$2y$`/`$2b$`/`$2a$`
//! (`htpasswd -B`), and the crypt(3) ones of the run image's libcrypt: `$1$`, `$5$`, `$6$`,
//! `$y$`. Anything else (a plain-text password, 8-character DES crypt, `{SSHA}`) fails the
//! build naming the file and line: a file kiln cannot enforce is never ignored.
//!
//! Why lighttpd: it is a production web server that Debian ships and patches (so the stack
//! builds it from the same signed archive as everything else), it is small (about 2 MB with
//! its libraries), it runs unprivileged on any port from one config file, in the foreground,
//! logging to standard error, and needs no writable directories. nginx needs writable
//! temp and log paths and a root master process by default; Caddy is not in Debian 12.

use std::fmt::Write as _;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::build_plan::{BuildPlanBuilder, Require};
use libcnb::data::launch::LaunchBuilder;
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, display};
use crate::common::{CnbResult, Error, Result, buildpack, layers, pass, say, section};
use crate::nodejs::STATIC_SITE;
use crate::nodejs::frontend::{self, Frontend};

/// The buildpack.
pub(crate) struct StaticBuildpack;

buildpack!(StaticBuildpack);

/// The port lighttpd listens on when `PORT` is not set.
const DEFAULT_PORT: &str = "8080";

/// What the site needs, from the app's files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Site {
    /// The document root, relative to the app (`.` for the app directory).
    root: String,
    /// Unknown paths serve `/index.html`.
    pushstate: bool,
    /// Directory listings.
    listings: bool,
    /// What made the buildpack detect.
    detected: String,
}

/// Reads the `Staticfile` (`key: value` lines).
fn staticfile(app: &App) -> Result<Option<Vec<(String, String)>>> {
    let Some(text) = app.read("Staticfile")? else {
        return Ok(None);
    };
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(Error::new(format!(
                "Staticfile line {}: expected `key: value`",
                index + 1
            ))
            .hint("for example `root: public`"));
        };
        entries.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(entries))
}

/// The Staticfile's `root:`, relative to the app, refused if it leaves the app.
fn checked_root(root: &str) -> Result<String> {
    let root = root.trim_matches('/').to_string();
    if root.split('/').any(|part| part == "..") {
        return Err(Error::new(format!(
            "Staticfile root `{root}` leaves the app directory"
        )));
    }
    Ok(if root.is_empty() {
        ".".to_string()
    } else {
        root
    })
}

/// The site of a Node.js front-end project; once `built`, its output directory must exist.
fn frontend_site(app: &App, frontend: &Frontend, built: bool) -> Result<Site> {
    let options = staticfile(app)?.unwrap_or_default();
    let get = |key: &str| options.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let root = match get("root") {
        Some(root) => checked_root(root)?,
        None if built => frontend::output_dir(app, frontend).ok_or_else(|| {
            let wanted = frontend.output.map_or_else(
                || "none of dist/, build/, out/".to_string(),
                |dir| format!("no {dir}/"),
            );
            Error::new(format!(
                "the build script ran but made {wanted}: there is no site to serve"
            ))
            .hint("make the build write dist/, or name its output directory with `root: DIR` in a Staticfile")
        })?,
        None => frontend
            .output
            .map_or_else(|| "dist".to_string(), ToString::to_string),
    };
    if built && !app.is_dir(&root) {
        return Err(Error::new(format!(
            "the site root `{root}` (from the Staticfile) is not a directory after the build"
        ))
        .hint("set `root:` in the Staticfile to the directory the build script writes"));
    }
    let pushstate = match get("pushstate") {
        Some(v) => matches!(v.as_str(), "enabled" | "true" | "on"),
        None => frontend.spa,
    };
    Ok(Site {
        root,
        pushstate,
        listings: get("directory").is_some_and(|v| matches!(v.as_str(), "visible" | "true" | "on")),
        detected: format!(
            "package.json build script{} (built by kiln/nodejs; pushstate: {})",
            frontend
                .framework
                .map(|f| format!(", {f}"))
                .unwrap_or_default(),
            frontend.spa_reason
        ),
    })
}

fn analyze(app: &App) -> Result<Option<Site>> {
    let options = staticfile(app)?;
    let detected = if options.is_some() {
        "Staticfile"
    } else if app.is_file("index.html") {
        "index.html"
    } else if app.is_dir("public") {
        "public/"
    } else if app.is_dir("dist") {
        "dist/"
    } else {
        return Ok(None);
    };
    let options = options.unwrap_or_default();
    let get = |key: &str| options.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let root = match get("root") {
        Some(root) => checked_root(root)?,
        None if app.is_dir("public") => "public".to_string(),
        None if app.is_dir("dist") => "dist".to_string(),
        None => ".".to_string(),
    };
    if !app.is_dir(&root) {
        return Err(Error::new(format!(
            "the site root `{root}` (from the Staticfile) is not a directory"
        ))
        .hint("set `root:` in the Staticfile to the directory holding index.html"));
    }
    let enabled = |key: &str| {
        get(key).is_some_and(|v| matches!(v.as_str(), "enabled" | "visible" | "true" | "on"))
    };
    Ok(Some(Site {
        root,
        pushstate: enabled("pushstate"),
        listings: enabled("directory"),
        detected: detected.to_string(),
    }))
}

fn command(config: &str) -> Vec<String> {
    vec![
        "lighttpd".to_string(),
        "-D".to_string(),
        "-f".to_string(),
        config.to_string(),
    ]
}

#[derive(serde::Serialize)]
struct Decisions<'a> {
    #[serde(flatten)]
    site: &'a Site,
    server: &'static str,
    start: String,
}

fn detect(context: &DetectContext<StaticBuildpack>) -> CnbResult<DetectResult> {
    let app = App::new(&context.app_dir);
    if app.is_file("package.json") {
        return detect_frontend(&app);
    }
    let Some(site) = analyze(&app)? else {
        crate::common::no_match(include_str!("buildpack.toml"));
        return DetectResultBuilder::fail().build();
    };
    pass(
        "static",
        &Decisions {
            site: &site,
            server: "lighttpd",
            start: display(&command(CONFIG_GUEST)),
        },
    )
}

/// A `package.json` project: served only as the front-end kiln/nodejs builds, by requiring
/// the `static-site` entry kiln/nodejs provides for it.
fn detect_frontend(app: &App) -> CnbResult<DetectResult> {
    // A package.json kiln/nodejs cannot read is its error to report, not this buildpack's.
    let Ok(Some(frontend)) = frontend::analyze(app) else {
        println!(
            "package.json: a Node.js app that starts a server or has no build script; kiln/static serves a Node.js project only when its build script makes a static site"
        );
        return DetectResultBuilder::fail().build();
    };
    let site = frontend_site(app, &frontend, false)?;
    let mut require = Require::new(STATIC_SITE);
    require
        .metadata(&Decisions {
            site: &site,
            server: "lighttpd",
            start: display(&command(CONFIG_GUEST)),
        })
        .map_err(|e| Error::new(format!("cannot record the plan: {e}")))?;
    DetectResultBuilder::pass()
        .build_plan(BuildPlanBuilder::new().requires(require).build())
        .build()
}

/// Where the config is in the image: `/layers/<escaped id>/config/lighttpd.conf`.
const CONFIG_GUEST: &str = "/layers/kiln_static/config/lighttpd.conf";

/// File types lighttpd announces, by extension.
const MIME_TYPES: &[(&str, &str)] = &[
    (".html", "text/html; charset=utf-8"),
    (".htm", "text/html; charset=utf-8"),
    (".css", "text/css; charset=utf-8"),
    (".js", "text/javascript; charset=utf-8"),
    (".mjs", "text/javascript; charset=utf-8"),
    (".json", "application/json"),
    (".map", "application/json"),
    (".webmanifest", "application/manifest+json"),
    (".xml", "application/xml"),
    (".txt", "text/plain; charset=utf-8"),
    (".md", "text/markdown; charset=utf-8"),
    (".csv", "text/csv; charset=utf-8"),
    (".svg", "image/svg+xml"),
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".jpeg", "image/jpeg"),
    (".gif", "image/gif"),
    (".webp", "image/webp"),
    (".avif", "image/avif"),
    (".ico", "image/vnd.microsoft.icon"),
    (".woff", "font/woff"),
    (".woff2", "font/woff2"),
    (".ttf", "font/ttf"),
    (".otf", "font/otf"),
    (".wasm", "application/wasm"),
    (".pdf", "application/pdf"),
    (".zip", "application/zip"),
    (".mp4", "video/mp4"),
    (".webm", "video/webm"),
    (".mp3", "audio/mpeg"),
    (".ogg", "audio/ogg"),
    ("", "application/octet-stream"),
];

/// The basic-auth users file, in the config layer (never under the site root).
const AUTH_FILE: &str = "htpasswd";

/// Reads and checks `Staticfile.auth`: `None` without one.
fn auth_file(app: &App) -> Result<Option<String>> {
    let Some(text) = app.read("Staticfile.auth")? else {
        return Ok(None);
    };
    let mut users = 0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |problem: String| {
            Error::new(format!("Staticfile.auth line {}: {problem}", index + 1)).hint(
                "write `user:hash` lines with `htpasswd -nB USER` (bcrypt) or `htpasswd -nm USER` (MD5, $apr1$)",
            )
        };
        let Some((user, hash)) = line.split_once(':') else {
            return Err(bad("expected `user:hash`".to_string()));
        };
        if user.is_empty() {
            return Err(bad("the user name is empty".to_string()));
        }
        if let Err(problem) = check_hash(hash) {
            return Err(bad(format!("the password of `{user}` {problem}")));
        }
        users += 1;
    }
    if users == 0 {
        return Err(Error::new("Staticfile.auth has no users")
            .hint("add `user:hash` lines (htpasswd -nB USER), or delete the file"));
    }
    Ok(Some(text))
}

/// Whether lighttpd's htpasswd backend can check `hash`.
fn check_hash(hash: &str) -> std::result::Result<(), String> {
    const CRYPT: &[&str] = &["$apr1$", "$2y$", "$2b$", "$2a$", "$1$", "$5$", "$6$", "$y$"];
    let salt_and_hash = |rest: &str| {
        rest.len() >= 8
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '$' | '='))
    };
    if let Some(prefix) = CRYPT.iter().find(|p| hash.starts_with(*p)) {
        return if salt_and_hash(&hash[prefix.len()..]) {
            Ok(())
        } else {
            Err(format!("is a malformed {prefix} hash"))
        };
    }
    if let Some(sha) = hash.strip_prefix("{SHA}") {
        // Base64 of a 20-byte SHA-1 digest.
        return if sha.len() == 28 && salt_and_hash(&sha.replace('+', "/")) {
            Ok(())
        } else {
            Err("is a malformed {SHA} hash".to_string())
        };
    }
    if hash.starts_with('{') {
        let scheme = hash.split('}').next().unwrap_or(hash);
        return Err(format!(
            "uses the {scheme}}} scheme, which lighttpd cannot check"
        ));
    }
    if hash.len() == 13 && salt_and_hash(hash) {
        return Err("is a DES crypt hash (it checks only 8 characters)".to_string());
    }
    Err("is not a hash lighttpd can check (a plain-text password?)".to_string())
}

fn config(site: &Site, app_dir: &str, auth: Option<&str>) -> String {
    let root = if site.root == "." {
        app_dir.to_string()
    } else {
        format!("{app_dir}/{}", site.root)
    };
    let mut c = String::new();
    let _ = writeln!(c, "# Written by kiln/static: serves {root} on $PORT.");
    let _ = writeln!(c, "server.document-root = \"{root}\"");
    c.push_str(concat!(
        "var.port = env.PORT\n",
        "server.port = var.port\n",
        "server.modules = (\"mod_access\", \"mod_accesslog\"",
    ));
    if auth.is_some() {
        c.push_str(", \"mod_auth\", \"mod_authn_file\"");
    }
    if site.listings {
        c.push_str(", \"mod_dirlisting\"");
    }
    c.push_str(concat!(
        ")\n",
        "server.upload-dirs = (\"/tmp\")\n",
        "server.follow-symlink = \"enable\"\n",
        "server.tag = \"lighttpd\"\n",
        "index-file.names = (\"index.html\", \"index.htm\")\n",
        "accesslog.filename = \"/dev/stderr\"\n",
        "# No backup files, and no dotfiles (.git, .env) even if they were copied.\n",
        "url.access-deny = (\"~\", \".inc\")\n",
        "$HTTP[\"url\"] =~ \"(^|/)\\.\" { url.access-deny = (\"\") }\n",
        "# Nor kiln's and Cloud Foundry's settings files, when the site is the app directory.\n",
        "$HTTP[\"url\"] =~ \"^/Staticfile\" { url.access-deny = (\"\") }\n",
        "mimetype.use-xattr = \"disable\"\n",
        "mimetype.assign = (\n",
    ));
    for (ext, kind) in MIME_TYPES {
        let _ = writeln!(c, "  \"{ext}\" => \"{kind}\",");
    }
    c.push_str(")\n");
    if site.pushstate {
        c.push_str("# pushstate: unknown paths serve the app's index.html.\n");
        c.push_str("server.error-handler-404 = \"/index.html\"\n");
    }
    if site.listings {
        c.push_str("dir-listing.activate = \"enable\"\n");
    }
    if let Some(users) = auth {
        let _ = writeln!(c, "# Staticfile.auth: every path needs a user of {users}.");
        c.push_str("auth.backend = \"htpasswd\"\n");
        let _ = writeln!(c, "auth.backend.htpasswd.userfile = \"{users}\"");
        c.push_str(concat!(
            "auth.require = (\"/\" => (\"method\" => \"basic\", \"realm\" => \"Restricted\", ",
            "\"require\" => \"valid-user\"))\n",
        ));
    }
    c
}

fn build(context: &BuildContext<StaticBuildpack>) -> CnbResult<BuildResult> {
    let app = App::new(&context.app_dir);
    let site = if app.is_file("package.json") {
        let frontend = frontend::analyze(&app)?.ok_or_else(|| {
            Error::new(
                "package.json stopped describing a front-end project between detect and build",
            )
        })?;
        frontend_site(&app, &frontend, true)?
    } else {
        analyze(&app)?.ok_or_else(|| Error::new("the site disappeared between detect and build"))?
    };
    let auth = auth_file(&app)?;
    section("Static site");
    say(&format!(
        "serving {} with lighttpd on $PORT (default {DEFAULT_PORT}){}{}",
        if site.root == "." {
            "the app directory"
        } else {
            &site.root
        },
        if site.pushstate { ", pushstate" } else { "" },
        if site.listings {
            ", directory listings"
        } else {
            ""
        },
    ));
    let layer = layers::launch_only(context, &layer_name!("config"))?;
    let app_dir = context.app_dir.to_string_lossy();
    let users = layer.path().join(AUTH_FILE);
    if let Some(text) = &auth {
        std::fs::write(&users, text)
            .map_err(|e| Error::new(format!("cannot write {}: {e}", users.display())))?;
        say("basic authentication for the users of Staticfile.auth");
    }
    let users = users.to_string_lossy();
    let path = layer.path().join("lighttpd.conf");
    std::fs::write(
        &path,
        config(&site, &app_dir, auth.is_some().then_some(&*users)),
    )
    .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
    layer.write_env(layers::launch_defaults(&[("PORT", DEFAULT_PORT)]))?;
    let config_path = path.to_string_lossy().into_owned();
    let mut launch = LaunchBuilder::new();
    launch.process(process::process("web", &command(&config_path), true)?);
    BuildResultBuilder::new().launch(launch.build()).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn app(files: &[&str]) -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if !f.ends_with('/') {
                fs::write(&path, "x").unwrap();
            }
        }
        let app = App::new(dir.path());
        (dir, app)
    }

    #[test]
    fn roots() {
        let (_d, a) = app(&["index.html"]);
        assert_eq!(analyze(&a).unwrap().unwrap().root, ".");
        let (_d, a) = app(&["public/index.html", "dist/index.html"]);
        assert_eq!(analyze(&a).unwrap().unwrap().root, "public");
        let (_d, a) = app(&["README.md"]);
        assert_eq!(analyze(&a).unwrap(), None);
        let (d, a) = app(&["site/index.html"]);
        fs::write(
            d.path().join("Staticfile"),
            "root: site/\npushstate: enabled\n",
        )
        .unwrap();
        let site = analyze(&a).unwrap().unwrap();
        assert_eq!((site.root.as_str(), site.pushstate), ("site", true));
        fs::write(d.path().join("Staticfile"), "root: nope\n").unwrap();
        assert!(analyze(&a).unwrap_err().to_string().contains("`nope`"));
        fs::write(d.path().join("Staticfile"), "root: ../etc\n").unwrap();
        assert!(analyze(&a).unwrap_err().to_string().contains("leaves"));
    }

    #[test]
    fn config_serves_the_root_on_port() {
        let site = Site {
            root: "public".into(),
            pushstate: true,
            listings: false,
            detected: "public/".into(),
        };
        let c = config(&site, "/workspace", None);
        assert!(c.contains("server.document-root = \"/workspace/public\""));
        assert!(c.contains("server.port = var.port"));
        assert!(c.contains("error-handler-404"));
        assert!(!c.contains("dirlisting"));
        assert!(!c.contains("mod_auth"));
        let c = config(
            &site,
            "/workspace",
            Some("/layers/kiln_static/config/htpasswd"),
        );
        assert!(c.contains("\"mod_auth\", \"mod_authn_file\""));
        assert!(
            c.contains("auth.backend.htpasswd.userfile = \"/layers/kiln_static/config/htpasswd\"")
        );
        assert!(c.contains("\"require\" => \"valid-user\""));
    }

    #[test]
    fn staticfile_auth_takes_the_hashes_lighttpd_checks() {
        for hash in [
            "$apr1$Zx7lY0ab$8H7IlS9bVqkJYfQfGmzqk/",
            "$2y$05$abcdefghijklmnopqrstuu5Ug5k1vVQ0aM6cN3nVkq1K1e7d3Yw2a",
            "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "$6$saltsalt$Ck0lXjJ8m2Y1L3w2p0q9g3b4n5m6v7c8x9z0a1s2d3f4g5h6j7k8l9",
        ] {
            assert_eq!(check_hash(hash), Ok(()), "{hash}");
        }
        for (hash, problem) in [
            ("secret", "plain-text"),
            ("abJnggxhB/yWI", "DES"),
            ("{SSHA}abc", "{SSHA}"),
            ("$apr1$", "malformed"),
        ] {
            assert!(check_hash(hash).unwrap_err().contains(problem), "{hash}");
        }
        let (d, a) = app(&["index.html"]);
        fs::write(
            d.path().join("Staticfile.auth"),
            "admin:$apr1$Zx7lY0ab$8H7IlS9bVqkJYfQfGmzqk/\n",
        )
        .unwrap();
        assert!(auth_file(&a).unwrap().is_some());
        fs::write(
            d.path().join("Staticfile.auth"),
            "admin:$apr1$Zx7lY0ab$8H7IlS9bVqkJYfQfGmzqk/\nbob:hunter2\n",
        )
        .unwrap();
        let err = auth_file(&a).unwrap_err().to_string();
        assert!(
            err.contains("Staticfile.auth line 2") && err.contains("`bob`"),
            "{err}"
        );
        fs::write(d.path().join("Staticfile.auth"), "\n").unwrap();
        assert!(auth_file(&a).unwrap_err().to_string().contains("no users"));
    }

    #[test]
    fn front_end_projects_serve_their_build_output() {
        let (d, a) = app(&["index.html", "src/main.js", "public/favicon.svg"]);
        fs::write(
            d.path().join("package.json"),
            r#"{"scripts": {"build": "vite build"}, "devDependencies": {"vite": "5"}}"#,
        )
        .unwrap();
        let frontend = frontend::analyze(&a).unwrap().unwrap();
        let planned = frontend_site(&a, &frontend, false).unwrap();
        assert_eq!((planned.root.as_str(), planned.pushstate), ("dist", true));
        let err = frontend_site(&a, &frontend, true).unwrap_err().to_string();
        assert!(err.contains("made no dist/"), "{err}");
        fs::create_dir(d.path().join("dist")).unwrap();
        assert_eq!(frontend_site(&a, &frontend, true).unwrap().root, "dist");
        fs::write(d.path().join("Staticfile"), "pushstate: disabled\n").unwrap();
        assert!(!frontend_site(&a, &frontend, true).unwrap().pushstate);
    }
}
