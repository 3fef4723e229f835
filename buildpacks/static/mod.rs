//! `kiln/static`: a static site served by lighttpd on `$PORT` (default 8080).
//!
//! Detects a `Staticfile`, an `index.html`, or a `public/` or `dist/` directory. The site root
//! is the Staticfile's `root:`, else `public/`, else `dist/`, else the app directory. The
//! Staticfile may also say `pushstate: enabled` (unknown paths serve `index.html`, for
//! single-page apps) and `directory: visible` (directory listings).
//!
//! Why lighttpd: it is a production web server that Debian ships and patches (so the stack
//! builds it from the same signed archive as everything else), it is small (about 2 MB with
//! its libraries), it runs unprivileged on any port from one config file, in the foreground,
//! logging to standard error, and needs no writable directories. nginx needs writable
//! temp and log paths and a root master process by default; Caddy is not in Debian 12.

use std::fmt::Write as _;

use libcnb::build::{BuildContext, BuildResult, BuildResultBuilder};
use libcnb::data::launch::LaunchBuilder;
use libcnb::data::layer_name;
use libcnb::detect::{DetectContext, DetectResult, DetectResultBuilder};

use crate::common::files::App;
use crate::common::process::{self, display};
use crate::common::{CnbResult, Error, Result, buildpack, layers, pass, say, section};

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
        Some(root) => {
            let root = root.trim_matches('/').to_string();
            if root.split('/').any(|part| part == "..") {
                return Err(Error::new(format!(
                    "Staticfile root `{root}` leaves the app directory"
                )));
            }
            if root.is_empty() {
                ".".to_string()
            } else {
                root
            }
        }
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

fn config(site: &Site, app_dir: &str) -> String {
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
    c
}

fn build(context: &BuildContext<StaticBuildpack>) -> CnbResult<BuildResult> {
    let app = App::new(&context.app_dir);
    let site = analyze(&app)?
        .ok_or_else(|| Error::new("the site disappeared between detect and build"))?;
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
    let path = layer.path().join("lighttpd.conf");
    std::fs::write(&path, config(&site, &app_dir))
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
        let c = config(&site, "/workspace");
        assert!(c.contains("server.document-root = \"/workspace/public\""));
        assert!(c.contains("server.port = var.port"));
        assert!(c.contains("error-handler-404"));
        assert!(!c.contains("dirlisting"));
    }
}
