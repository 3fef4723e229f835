//! Static sites served by kiln/static with lighttpd: a Node.js front-end project built by
//! kiln/nodejs and handed over (the `static-site` plan entry), with the single-page-app
//! fallback; and `Staticfile.auth` basic authentication. Each image runs under podman.

use std::process::Command;

use serde_json::Value;

use crate::assert_contains;
use crate::util::{Podman, TestEnv, free_port, oci, require, sh};

/// A Vite-like project: `npm run build` runs a small node script (no network, no
/// dependencies to install) that writes `dist/index.html` and a hashed asset, as Vite does.
const VITE_APP: &[(&str, &str)] = &[
    (
        "package.json",
        r#"{
  "name": "dashboard",
  "private": true,
  "version": "0.1.0",
  "type": "module",
  "scripts": {
    "dev": "node build.js --watch",
    "build": "node build.js"
  }
}
"#,
    ),
    (
        "vite.config.js",
        "export default { build: { outDir: 'dist' } };\n",
    ),
    (
        "index.html",
        "<!doctype html>\n<div id=\"root\"></div>\n<script type=\"module\" src=\"/src/main.js\"></script>\n",
    ),
    (
        "src/main.js",
        "document.getElementById('root').textContent = 'Dashboard for ' + location.pathname;\n",
    ),
    (
        "build.js",
        r#"import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
const js = readFileSync('src/main.js', 'utf8');
mkdirSync('dist/assets', { recursive: true });
writeFileSync('dist/assets/index-3f2a1c.js', js);
const html = readFileSync('index.html', 'utf8')
  .replace('/src/main.js', '/assets/index-3f2a1c.js')
  .replace('<div id="root"></div>', '<title>Dashboard</title><div id="root"></div>');
writeFileSync('dist/index.html', html);
console.log('built dist/ in 3ms');
"#,
    ),
];

#[test]
fn a_front_end_build_is_served_by_lighttpd_with_spa_fallback() {
    if !require("node") {
        return;
    }
    let env = TestEnv::new();
    let app = env.app("dashboard", VITE_APP);
    let detect: Value = serde_json::from_str(&env.ok(&[
        "detect",
        "--format",
        "json",
        "--path",
        app.to_str().unwrap(),
    ]))
    .unwrap();
    let group: Vec<&str> = detect["group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().split('@').next().unwrap())
        .collect();
    assert_eq!(group, ["kiln/nodejs", "kiln/static"], "{detect}");
    // Node.js is not needed at run time: the small lighttpd flavour runs the site.
    assert_eq!(detect["run_image"], "kiln/stacks/trixie-static:latest");
    assert_contains!(detect["start"].as_str().unwrap(), "lighttpd");

    let out = oci(&env.path("out"), "dashboard");
    let build = env
        .kiln()
        .args(["build", "--output", &out, "--path", app.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{stderr}");
    assert_contains!(stderr, "built dist/ in 3ms");
    assert_contains!(stderr, "serving dist with lighttpd");
    assert_contains!(stderr, "pushstate");
    let inspection = env.inspect(&out);
    let processes = inspection["processes"].to_string();
    assert_contains!(processes, "lighttpd");

    let Some(podman) = Podman::new() else {
        return;
    };
    let served = podman.serve(&out, free_port());
    let (code, index) = served.get("/").unwrap();
    assert_eq!(code, 200, "{index}");
    assert_contains!(index, "<title>Dashboard</title>");
    assert_contains!(index, "/assets/index-3f2a1c.js");
    let (code, asset) = served.get("/assets/index-3f2a1c.js").unwrap();
    assert_eq!(code, 200);
    assert_contains!(asset, "Dashboard for");
    // A client-side route: index.html answers it.
    let (code, route) = served.get("/reports/2024/q3").unwrap();
    assert_eq!(code, 200, "{route}\n{}", served.logs());
    assert_eq!(route, index);
    // Only dist/ is served: the project's own files are not (the fallback page answers).
    let (_, body) = served.get("/package.json").unwrap();
    assert!(!body.contains("\"scripts\""), "{body}");
    assert_eq!(body, index);
}

#[test]
fn staticfile_auth_protects_the_site_with_htpasswd_users() {
    if !require("htpasswd") {
        return;
    }
    let env = TestEnv::new();
    let apr1 = sh("htpasswd", &["-nbm", "editor", "s3cret-apr1"]);
    let bcrypt = sh("htpasswd", &["-nbB", "admin", "s3cret-bcrypt"]);
    let users = format!("{}\n{}\n", apr1.trim(), bcrypt.trim());
    let app = env.app(
        "intranet",
        &[
            ("Staticfile", "root: public\n"),
            ("Staticfile.auth", &users),
            ("public/index.html", "<h1>Team handbook</h1>\n"),
        ],
    );
    let out = oci(&env.path("out"), "intranet");
    env.ok(&["build", "--output", &out, "--path", app.to_str().unwrap()]);

    // A plain-text password is refused, naming the file and line.
    let bad = env.app(
        "bad",
        &[
            ("index.html", "<h1>x</h1>\n"),
            (
                "Staticfile.auth",
                &format!("{}\nguest:guest\n", apr1.trim()),
            ),
        ],
    );
    let stderr = env.fails(
        &[
            "build",
            "--output",
            &oci(&env.path("bad-out"), "bad"),
            "--path",
            bad.to_str().unwrap(),
        ],
        51,
    );
    assert_contains!(stderr, "Staticfile.auth line 2: the password of `guest`");

    let Some(podman) = Podman::new() else {
        return;
    };
    let served = podman.serve(&out, free_port());
    let (code, _) = served.get("/").unwrap();
    assert_eq!(code, 401, "{}", served.logs());
    for (user, password) in [("editor", "s3cret-apr1"), ("admin", "s3cret-bcrypt")] {
        let token = basic(user, password);
        let (code, body) = served
            .get_with("/", &[("Authorization", &format!("Basic {token}"))])
            .unwrap();
        assert_eq!(code, 200, "{user}: {}", served.logs());
        assert_contains!(body, "Team handbook");
    }
    let wrong = basic("admin", "wrong");
    let (code, _) = served
        .get_with("/", &[("Authorization", &format!("Basic {wrong}"))])
        .unwrap();
    assert_eq!(code, 401);
}

/// `user:password` in base64, as coreutils' `base64` writes it.
fn basic(user: &str, password: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" | base64 -w0", "sh"])
        .arg(format!("{user}:{password}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
