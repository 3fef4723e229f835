//! Image transport: registries (Debian's docker-registry, with and without basic auth, and a
//! hostile fake), the Docker API (`podman system service`) and docker archives.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::assert_contains;
use crate::servers::{FakeRegistry, LocalRegistry, PodmanService, Reply, Request, StallingProxy};
use crate::util::{Podman, TestEnv, example_app, example_buildpack, require, sh, validate_layout};

const HELLO: &str = "Hello from kiln! I run as uid 1000 in /workspace with args: default-arg";

/// A kiln command that sees no credentials but those a test gives it.
fn isolated(env: &TestEnv) -> Command {
    let mut c = env.kiln();
    isolate(&mut c);
    c
}

/// Removes the credentials and daemon settings `command` would inherit.
fn isolate(command: &mut Command) {
    command
        .env("DOCKER_CONFIG", "/nonexistent/kiln-test")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("KILN_REGISTRY_AUTH")
        .env_remove("DOCKER_HOST");
}

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().unwrap()
}

fn assert_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Output and error text together.
fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kiln build IMAGE --publish` of the example app, with its JSON report.
fn publish(env: &TestEnv, command: Command, image: &str) -> serde_json::Value {
    let app = example_app();
    let bp = example_buildpack();
    let run_image = env.run_image();
    let out = run(
        command,
        &[
            "build",
            image,
            "--publish",
            "--path",
            app.to_str().unwrap(),
            "-b",
            bp.to_str().unwrap(),
            "--run-image",
            &run_image,
            "--format",
            "json",
        ],
    );
    serde_json::from_str(&assert_ok(&out, "kiln build --publish")).unwrap()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `skopeo inspect` of a registry image: its manifest digest.
fn skopeo_digest(image: &str, creds: Option<&str>) -> Option<String> {
    let mut args = vec!["inspect", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    let reference = format!("docker://{image}");
    args.push(&reference);
    let out = Command::new("skopeo").args(&args).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(json["Digest"].as_str().unwrap().to_string())
}

#[test]
fn publish_pushes_an_image_that_skopeo_and_podman_accept_and_a_rebuild_uploads_nothing() {
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let env = TestEnv::new();
    let image = format!("{}/demo/hello:1", registry.host());
    let report = publish(&env, isolated(&env), &image);
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    let pushed = &report["published"];
    assert_eq!(pushed["kind"], "pushed", "{report:#}");
    assert_eq!(pushed["digest"], digest.as_str());
    let uploaded = strings(&pushed["uploaded"]);
    // Config and every layer went up, and the report names them all.
    let layers: Vec<String> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    for layer in &layers {
        assert!(uploaded.contains(layer), "{layer} not uploaded: {report:#}");
    }
    assert!(
        report["timings"]["publish"].as_f64().is_some(),
        "{report:#}"
    );

    if require("skopeo") {
        assert_eq!(
            skopeo_digest(&image, None).as_deref(),
            Some(digest.as_str())
        );
    }
    if let Some(podman) = Podman::new() {
        let out = podman.run(&image, &["--tls-verify=false"], &[]);
        assert_eq!(assert_ok(&out, "podman run").trim(), HELLO);
    }

    // The same build again: same digest, nothing uploaded.
    let again = publish(&env, isolated(&env), &image);
    assert_eq!(again["manifest_digest"], digest.as_str());
    assert_eq!(
        strings(&again["published"]["uploaded"]),
        Vec::<String>::new()
    );
    assert_eq!(again["published"]["bytes_uploaded"], 0);
    assert_eq!(
        strings(&again["published"]["existing"]).len(),
        uploaded.len()
    );

    // To another repository of the same registry: every blob is mounted, none uploaded.
    let other = format!("{}/other/hello:2", registry.host());
    let out = run(
        isolated(&env),
        &["push", &image, &other, "--format", "json"],
    );
    let push: serde_json::Value = serde_json::from_str(&assert_ok(&out, "kiln push")).unwrap();
    assert_eq!(push["manifest_digest"], digest.as_str());
    assert_eq!(
        strings(&push["published"]["uploaded"]),
        Vec::<String>::new()
    );
    assert_eq!(
        strings(&push["published"]["mounted"]).len(),
        uploaded.len(),
        "{push:#}"
    );

    // Pulled back into another store, by tag and by digest: the same image.
    let fresh = TestEnv::new();
    for reference in [
        other.clone(),
        format!("{}/demo/hello@{digest}", registry.host()),
    ] {
        let out = run(isolated(&fresh), &["pull", &reference]);
        assert_contains!(assert_ok(&out, "kiln pull"), digest.as_str());
    }
    let inspected = fresh.inspect(&other);
    assert_eq!(
        inspected["manifest_digest"],
        digest.as_str(),
        "{inspected:#}"
    );
    assert!(fresh.store().layout().verify().unwrap().is_ok());
    // And copied out of the store into a layout the validators accept.
    let layout = fresh.path("copy");
    let out = run(
        isolated(&fresh),
        &["push", &other, &format!("oci:{}:hello", layout.display())],
    );
    assert_ok(&out, "kiln push to oci:");
    validate_layout(&layout, "hello", &fresh.path("validate"));

    // A run image from the registry.
    let run_image = format!("{}/stacks/busybox:1", registry.host());
    let out = run(isolated(&env), &["push", &env.run_image(), &run_image]);
    assert_ok(&out, "kiln push of the run image");
    let fresh = TestEnv::new();
    fresh.build_ok(
        &example_app(),
        &[&example_buildpack()],
        "on-registry-base:1",
        &["--run-image", &run_image],
    );
    let inspected = fresh.inspect("on-registry-base:1");
    assert_eq!(inspected["run_image"]["image"], run_image.as_str());
}

/// `skopeo inspect --raw` of a registry image, parsed.
fn skopeo_raw(image: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    serde_json::from_str(&assert_ok(&out, "skopeo inspect --raw")).unwrap()
}

#[test]
fn a_pushed_image_s_sboms_and_provenance_go_with_it_under_the_referrers_tag() {
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let env = TestEnv::new();
    let repository = format!("{}/demo/attached", registry.host());
    let image = format!("{repository}:1");
    let report = publish(&env, isolated(&env), &image);
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    let pushed = &report["published"];
    let mut referrers = strings(&pushed["referrers"]);
    referrers.sort();
    assert_eq!(referrers.len(), 3, "SBOMs and provenance: {report:#}");
    // distribution 2.8 has no referrers API: kiln keeps the tag schema's index.
    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    assert_eq!(pushed["referrers_tag"], tag.as_str(), "{report:#}");

    let listed_types = |index: &serde_json::Value| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["digest"].as_str().unwrap().to_string(),
                    d["artifactType"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    if require("skopeo") {
        let index = skopeo_raw(&format!("{repository}:{tag}"));
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let listed = listed_types(&index);
        assert_eq!(
            listed.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            referrers
        );
        let mut types: Vec<&str> = listed.iter().map(|(_, t)| t.as_str()).collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                "application/spdx+json",
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ]
        );
        for (artifact, artifact_type) in &listed {
            let manifest = skopeo_raw(&format!("{repository}@{artifact}"));
            assert_eq!(manifest["subject"]["digest"], digest.as_str());
            assert_eq!(manifest["artifactType"], artifact_type.as_str());
        }
    }

    // Read back from the registry into a fresh store: the same bytes as those of the same
    // image built to a layout under the same name.
    let layout = format!("oci:{}:{image}", env.path("local").display());
    let app = example_app();
    let bp = example_buildpack();
    let run_image = env.run_image();
    let out = run(
        isolated(&env),
        &[
            "build",
            &image,
            "--output",
            &layout,
            "--path",
            app.to_str().unwrap(),
            "-b",
            bp.to_str().unwrap(),
            "--run-image",
            &run_image,
            "--format",
            "json",
        ],
    );
    let local: serde_json::Value =
        serde_json::from_str(&assert_ok(&out, "kiln build --output oci:")).unwrap();
    assert_eq!(local["manifest_digest"], digest.as_str());
    let fresh = TestEnv::new();
    for what in [
        &["sbom"][..],
        &["sbom", "--format", "spdx"],
        &["provenance"],
    ] {
        let from_registry = assert_ok(
            &run(isolated(&fresh), &[what, &[image.as_str()]].concat()),
            "kiln sbom/provenance of the registry image",
        );
        let from_layout = assert_ok(
            &run(isolated(&env), &[what, &[layout.as_str()]].concat()),
            "kiln sbom/provenance of the layout's copy",
        );
        assert_eq!(from_registry, from_layout, "{what:?}");
    }

    // Pushed again, to another tag of the repository: the index gains no duplicates.
    let out = run(
        isolated(&env),
        &[
            "push",
            &image,
            &format!("{repository}:2"),
            "--format",
            "json",
        ],
    );
    let again: serde_json::Value = serde_json::from_str(&assert_ok(&out, "kiln push")).unwrap();
    assert_eq!(again["published"]["referrers_tag"], tag.as_str());
    if require("skopeo") {
        let index = skopeo_raw(&format!("{repository}:{tag}"));
        assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "{index:#}");
    }
}

#[test]
fn auth_registry_takes_credentials_from_files_flags_env_and_helpers_and_never_shows_them() {
    const USER: &str = "ciuser";
    const PASSWORD: &str = "s3cret-pw";
    let Some(registry) = LocalRegistry::start(Some((USER, PASSWORD))) else {
        return;
    };
    let env = TestEnv::new();
    let host = registry.host();
    let image = format!("{host}/private/hello:1");
    let no_secret = |out: &Output| {
        assert!(
            !all_output(out).contains(PASSWORD),
            "the password was shown:\n{}",
            all_output(out)
        );
    };

    // No credentials: refused, with what to do.
    let app = example_app();
    let bp = example_buildpack();
    let run_image = env.run_image();
    let build_args = [
        "build",
        &image,
        "--publish",
        "--path",
        app.to_str().unwrap(),
        "-b",
        bp.to_str().unwrap(),
        "--run-image",
        &run_image,
    ];
    let out = run(isolated(&env), &build_args);
    assert_eq!(out.status.code(), Some(63), "{}", all_output(&out));
    let text = all_output(&out);
    assert_contains!(text, "refused access");
    assert_contains!(text, "anonymously");
    assert_contains!(text, "--creds");

    // A REGISTRY_AUTH_FILE (as podman login / skopeo login write it).
    let auth_file = env.path("auth.json");
    let basic = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    fs::write(
        &auth_file,
        format!(r#"{{"auths": {{"{host}": {{"auth": "{basic}"}}}}}}"#),
    )
    .unwrap();
    let mut command = isolated(&env);
    command.env("REGISTRY_AUTH_FILE", &auth_file);
    let report_file = env.path("report.json");
    let out = command
        .args(build_args)
        .args(["--report", report_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&out, "kiln build --publish with REGISTRY_AUTH_FILE");
    no_secret(&out);
    let report = fs::read_to_string(&report_file).unwrap();
    assert!(!report.contains(PASSWORD));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    if require("skopeo") {
        assert_eq!(
            skopeo_digest(&image, Some(&format!("{USER}:{PASSWORD}"))).as_deref(),
            Some(digest.as_str())
        );
        assert_eq!(skopeo_digest(&image, None), None, "anonymous access worked");
    }
    // The credentials are nowhere in the image.
    let creds = format!("{USER}:{PASSWORD}");
    let config = env.ok(&["inspect", "--format", "json", "--creds", &creds, &image]);
    assert!(!config.contains(PASSWORD) && !config.contains(&basic));

    // A second identical build through the same credentials uploads nothing.
    let mut command = isolated(&env);
    command.env("REGISTRY_AUTH_FILE", &auth_file);
    let again = publish(&env, command, &image);
    assert_eq!(
        strings(&again["published"]["uploaded"]),
        Vec::<String>::new()
    );

    // --creds and KILN_REGISTRY_AUTH, pulling into fresh stores.
    let fresh = TestEnv::new();
    let out = run(isolated(&fresh), &["pull", &image, "--creds", &creds]);
    assert_contains!(assert_ok(&out, "kiln pull --creds"), digest.as_str());
    no_secret(&out);
    let fresh = TestEnv::new();
    let mut command = isolated(&fresh);
    command.env("KILN_REGISTRY_AUTH", &creds);
    let out = run(command, &["pull", &image]);
    assert_contains!(
        assert_ok(&out, "kiln pull with KILN_REGISTRY_AUTH"),
        digest.as_str()
    );

    // Wrong credentials: refused, naming the user but not the password.
    let mut command = isolated(&fresh);
    command.env("KILN_REGISTRY_AUTH", format!("{USER}:wrong-{PASSWORD}"));
    let out = run(command, &["pull", &image]);
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    assert_contains!(all_output(&out), "refused access");
    assert_contains!(all_output(&out), USER);
    no_secret(&out);

    // A Docker config naming a credential helper (the CI recipe's way).
    let helpers = write_credential_helper(&env.path("helpers"), &host, USER, PASSWORD);
    let docker_config = env.path("docker-config");
    fs::create_dir_all(&docker_config).unwrap();
    fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{host}": "kilntest"}}}}"#),
    )
    .unwrap();
    let fresh = TestEnv::new();
    let mut command = isolated(&fresh);
    command
        .env("DOCKER_CONFIG", &docker_config)
        .env("PATH", path_with(&helpers));
    let out = run(command, &["pull", &image]);
    assert_contains!(
        assert_ok(&out, "kiln pull with a credential helper"),
        digest.as_str()
    );
    no_secret(&out);
}

/// Writes `docker-credential-kilntest` into `dir` (returned, for `PATH`): a credential
/// helper that knows `user`/`password` for `host` and nothing else.
fn write_credential_helper(
    dir: &Path,
    host: &str,
    user: &str,
    password: &str,
) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    let helper = dir.join("docker-credential-kilntest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn ci_recipe_builds_and_pushes_with_a_credential_helper() {
    let Some(registry) = LocalRegistry::start(Some(("ci", "ci-token"))) else {
        return;
    };
    let env = TestEnv::new();
    let host = registry.host();
    let helpers = write_credential_helper(&env.path("helpers"), &host, "ci", "ci-token");
    let image = format!("{host}/team/app:abc123");
    let report = env.path("report.json");
    let outputs = env.path("github-output");
    let mut command = Command::new("bash");
    isolate(&mut command);
    command
        .current_dir(env.dir.path())
        .env("KILN_HOME", env.home())
        .env("PATH", path_with(&helpers))
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_BUILD_ENV", "host")
        .env("IMAGE", &image)
        .env("CREDENTIAL_HELPER", "kilntest")
        .env("REPORT", &report)
        .env("GITHUB_OUTPUT", &outputs)
        .env_remove("REGISTRY_USER");
    let bp = example_buildpack();
    let run_image = env.run_image();
    let out = run(
        command,
        &[
            crate::util::repo()
                .join("examples/ci/build-and-push.sh")
                .to_str()
                .unwrap(),
            example_app().to_str().unwrap(),
            "-b",
            bp.to_str().unwrap(),
            "--run-image",
            &run_image,
        ],
    );
    let stdout = assert_ok(&out, "examples/ci/build-and-push.sh");
    assert!(!all_output(&out).contains("ci-token"));
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap();
    assert_contains!(stdout, format!("pushed {image} ({digest})"));
    assert_eq!(
        fs::read_to_string(&outputs).unwrap(),
        format!("digest={digest}\nimage={image}\n")
    );
    if require("skopeo") {
        assert_eq!(
            skopeo_digest(&image, Some("ci:ci-token")).as_deref(),
            Some(digest)
        );
    }
}

/// Standard base64, for an auth file.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes an OCI layout at `dir` whose `multi` is an index of one tiny image per
/// architecture, each holding `/arch` with its name; returns each manifest digest.
fn write_multi_arch_layout(dir: &Path, arches: &[&str]) -> Vec<String> {
    use kiln::image::layout::OciLayout;
    use kiln::layer::{LayerSpec, write_layer};
    use kiln::oci::{
        Arch, ImageConfigurationBuilder, ImageIndexBuilder, MediaType, Os, PlatformBuilder,
        RootFsBuilder,
    };
    let layout = OciLayout::ensure(dir).unwrap();
    let mut manifests = Vec::new();
    let mut digests = Vec::new();
    for arch in arches {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("arch"), arch).unwrap();
        let blob = write_layer(
            &layout,
            &LayerSpec {
                parents: vec![],
                source: src.path().to_path_buf(),
                target: String::new(),
                only: None,
                uid: 0,
                gid: 0,
                entry_metadata: None,
            },
        )
        .unwrap();
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::from(*arch))
            .os(Os::Linux)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![blob.diff_id.to_string()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let layer = kiln::image::descriptor(MediaType::ImageLayerGzip, &blob.digest, blob.size);
        let written = kiln::image::write_image(&layout, vec![layer], &config).unwrap();
        let mut descriptor = written.descriptor.clone();
        descriptor.set_platform(Some(
            PlatformBuilder::default()
                .os(Os::Linux)
                .architecture(Arch::from(*arch))
                .build()
                .unwrap(),
        ));
        digests.push(descriptor.digest().to_string());
        manifests.push(descriptor);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .unwrap();
    let (digest, size) = layout
        .write_blob(&serde_json::to_vec(&index).unwrap())
        .unwrap();
    layout
        .tag(
            &kiln::image::descriptor(MediaType::ImageIndex, &digest, size),
            "multi",
        )
        .unwrap();
    digests
}

#[test]
fn multi_arch_index_is_read_with_platform_selection() {
    if !require("skopeo") {
        return;
    }
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let env = TestEnv::new();
    let layout = env.path("multi");
    let digests = write_multi_arch_layout(&layout, &["amd64", "arm64"]);
    let image = format!("{}/multi:1", registry.host());
    sh(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{image}"),
        ],
    );

    for (platform, digest) in [("linux/amd64", &digests[0]), ("linux/arm64", &digests[1])] {
        let fresh = TestEnv::new();
        let out = run(isolated(&fresh), &["pull", &image, "--platform", platform]);
        assert_contains!(assert_ok(&out, "kiln pull --platform"), digest.as_str());
        let inspected = fresh.inspect(&image);
        assert_eq!(inspected["platform"], platform, "{inspected:#}");
    }
    // Without --platform: the host's.
    let fresh = TestEnv::new();
    let out = run(isolated(&fresh), &["pull", &image]);
    let host = kiln::TargetPlatform::host().to_string();
    let expected = if host == "linux/arm64" {
        &digests[1]
    } else {
        &digests[0]
    };
    assert_contains!(assert_ok(&out, "kiln pull"), expected.as_str());
    // A platform the index lacks: a clear error listing what it has.
    let out = run(
        isolated(&fresh),
        &["pull", &image, "--platform", "linux/s390x"],
    );
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    assert_contains!(all_output(&out), "no image for linux/s390x");
    assert_contains!(all_output(&out), "linux/amd64, linux/arm64");
}

#[test]
fn docker_daemon_output_loads_into_the_docker_api_and_runs() {
    let Some(podman) = Podman::new() else { return };
    let env = TestEnv::new();
    let service = PodmanService::start(&podman, env.dir.path());
    let mut command = isolated(&env);
    command.env("DOCKER_HOST", service.docker_host());
    let app = example_app();
    let bp = example_buildpack();
    let run_image = env.run_image();
    let out = run(
        command,
        &[
            "build",
            "kiln-daemon-test:1",
            "--path",
            app.to_str().unwrap(),
            "-b",
            bp.to_str().unwrap(),
            "--run-image",
            &run_image,
            "--output",
            "docker-daemon:kiln-daemon-test:1",
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&assert_ok(&out, "kiln build --output docker-daemon:")).unwrap();
    assert_eq!(report["published"]["kind"], "loaded", "{report:#}");
    assert_contains!(
        report["published"]["messages"].to_string(),
        "kiln-daemon-test:1"
    );
    let out = podman.run("localhost/kiln-daemon-test:1", &[], &[]);
    assert_eq!(assert_ok(&out, "podman run").trim(), HELLO);

    // Read back from the daemon: the same layers (the daemon stores them uncompressed).
    let fresh = TestEnv::new();
    let mut command = isolated(&fresh);
    command.env("DOCKER_HOST", service.docker_host());
    let out = run(command, &["pull", "docker-daemon:kiln-daemon-test:1"]);
    assert_ok(&out, "kiln pull docker-daemon:");
    let inspected = fresh.inspect("kiln-daemon-test:1");
    let daemon_diff_ids: Vec<&str> = inspected["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap())
        .collect();
    let built: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap())
        .collect();
    assert!(
        daemon_diff_ids.ends_with(&built),
        "{daemon_diff_ids:?} does not end with {built:?}"
    );

    // An unreachable daemon: a clear error naming DOCKER_HOST.
    let mut command = isolated(&fresh);
    command.env(
        "DOCKER_HOST",
        format!("unix://{}", env.path("nothing.sock").display()),
    );
    let out = run(
        command,
        &["push", "kiln-daemon-test:1", "docker-daemon:x:1"],
    );
    assert_eq!(out.status.code(), Some(63), "{}", all_output(&out));
    assert_contains!(all_output(&out), "DOCKER_HOST");
}

#[test]
fn docker_archive_output_loads_into_podman_and_reads_back() {
    let env = TestEnv::new();
    let archive = env.path("hello.docker.tar");
    let out = env.build(
        &example_app(),
        &[&example_buildpack()],
        &format!("docker-archive:{}:kiln-archive-test:1", archive.display()),
        &["--format", "json"],
    );
    let report: serde_json::Value =
        serde_json::from_str(&assert_ok(&out, "kiln build --output docker-archive:")).unwrap();
    // kiln reads its own archive back: the same image (its layers now uncompressed).
    let inspected = env.inspect(&format!("docker-archive:{}", archive.display()));
    assert_eq!(inspected["config_digest"], report["config_digest"]);
    // And builds on it as a run image.
    env.build_ok(
        &example_app(),
        &[&example_buildpack()],
        "on-archive-base:1",
        &[
            "--run-image",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    let Some(podman) = Podman::new() else { return };
    let out = podman
        .command()
        .args(["load", "-i", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert_contains!(assert_ok(&out, "podman load"), "kiln-archive-test:1");
    let out = podman.run("localhost/kiln-archive-test:1", &[], &[]);
    assert_eq!(assert_ok(&out, "podman run").trim(), HELLO);
}

/// A small image served by the fake registry as `fake/app:1`.
struct FakeImage {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

use crate::util::sha256;

impl FakeImage {
    fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        let content = "hello from a fake registry\n".repeat(4000);
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "hello.txt", content.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = sha256(&tar);
        // Stored (not compressed) gzip, so the blob is large enough to truncate midway.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let layer = gz.finish().unwrap();
        let layer_digest = sha256(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes();
        let config_digest = sha256(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes();
        Self {
            manifest_digest: sha256(&manifest),
            manifest,
            config_digest,
            config,
            layer_digest,
            layer,
        }
    }

    /// What an honest registry answers.
    fn serve(&self, request: &Request) -> Reply {
        let path = request.path.as_str();
        if path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if path == "/v2/fake/app/manifests/1"
            || path == format!("/v2/fake/app/manifests/{}", self.manifest_digest)
        {
            return Reply::new(200, self.manifest.clone())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &self.manifest_digest);
        }
        for (digest, bytes) in [
            (&self.config_digest, &self.config),
            (&self.layer_digest, &self.layer),
        ] {
            if path == format!("/v2/fake/app/blobs/{digest}") {
                let start = request
                    .header("range")
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<usize>().ok());
                return match start {
                    Some(start) if start < bytes.len() => Reply::new(206, bytes[start..].to_vec())
                        .header(
                            "Content-Range",
                            &format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                        ),
                    _ => Reply::new(200, bytes.clone()),
                }
                .header("Content-Type", "application/octet-stream")
                .header("Docker-Content-Digest", digest);
            }
        }
        Reply::new(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        )
        .header("Content-Type", "application/json")
    }
}

/// `kiln pull HOST/fake/app:1` in a fresh store; returns the output and the environment.
fn pull_fake(registry: &FakeRegistry) -> (Output, TestEnv) {
    let env = TestEnv::new();
    let out = run(
        isolated(&env),
        &["pull", &format!("{}/fake/app:1", registry.host())],
    );
    (out, env)
}

#[test]
fn fake_registry_honest_pull_works() {
    let image = std::sync::Arc::new(FakeImage::new());
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, _| served.serve(request));
    let (out, env) = pull_fake(&registry);
    assert_contains!(assert_ok(&out, "kiln pull"), image.manifest_digest.as_str());
    assert!(env.store().layout().verify().unwrap().is_ok());
}

#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_is_kept() {
    let image = std::sync::Arc::new(FakeImage::new());
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, _| {
        let mut reply = served.serve(request);
        if request.path.ends_with(&served.layer_digest) {
            // Same length, one byte changed.
            let last = reply.body.len() - 1;
            reply.body[last] ^= 0xff;
        }
        reply
    });
    let (out, env) = pull_fake(&registry);
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    let text = all_output(&out);
    assert_contains!(text, "does not match its digest");
    assert_contains!(text, image.layer_digest.as_str());
    assert_contains!(text, "nothing was kept");
    let layout = env.store().layout().clone();
    assert!(!layout.has_blob(&image.layer_digest.parse().unwrap()));
    assert!(layout.verify().unwrap().is_ok());
    let images = env.ok(&["images"]);
    assert!(!images.contains("fake/app"), "{images}");
}

#[test]
fn a_truncated_blob_download_resumes_with_a_range_request() {
    let image = std::sync::Arc::new(FakeImage::new());
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, seen| {
        let mut reply = served.serve(request);
        if request.path.ends_with(&served.layer_digest) && seen == 0 {
            reply.truncate_at = Some(reply.body.len() / 2);
        }
        reply
    });
    let (out, env) = pull_fake(&registry);
    assert_contains!(assert_ok(&out, "kiln pull"), image.manifest_digest.as_str());
    let resumed = registry
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&image.layer_digest))
        .collect::<Vec<_>>();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    let range = resumed[1].header("range").unwrap_or_default().to_string();
    assert_eq!(range, format!("bytes={}-", image.layer.len() / 2));
    assert!(env.store().layout().verify().unwrap().is_ok());
}

#[test]
fn a_blob_always_cut_short_fails_after_retries_and_keeps_nothing() {
    let image = std::sync::Arc::new(FakeImage::new());
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, _| {
        let mut reply = served.serve(request);
        if request.path.ends_with(&served.layer_digest) {
            // Whatever range is asked, nothing arrives.
            reply.truncate_at = Some(0);
        }
        reply
    });
    let (out, env) = pull_fake(&registry);
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    assert_contains!(all_output(&out), image.layer_digest.as_str());
    let attempts = registry
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&image.layer_digest))
        .count();
    assert_eq!(attempts, 5, "kiln tries 5 times");
    assert!(
        !env.store()
            .layout()
            .has_blob(&image.layer_digest.parse().unwrap())
    );
}

#[test]
fn an_unauthorized_loop_ends_with_a_clear_error() {
    let registry = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let realm = std::sync::Arc::clone(&registry);
    let fake = FakeRegistry::start(move |request, _| {
        if request.path.starts_with("/token") {
            // Hands out tokens the registry then refuses, forever.
            return Reply::new(200, r#"{"token":"useless"}"#)
                .header("Content-Type", "application/json");
        }
        let host = realm.get().cloned().unwrap_or_default();
        Reply::new(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .header("Content-Type", "application/json")
        .header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://{host}/token",service="fake",scope="repository:fake/app:pull""#),
        )
    });
    registry.set(fake.host()).unwrap();
    let started = Instant::now();
    let (out, _env) = pull_fake(&fake);
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    assert_contains!(all_output(&out), "refused access");
    let requests = fake.requests().len();
    assert!(requests < 20, "{requests} requests: kiln should not loop");
    assert!(started.elapsed() < Duration::from_mins(1));
}

#[test]
fn server_errors_are_retried_and_a_persistent_one_is_reported_with_its_envelope() {
    // A 500 on the manifest, then success.
    let image = std::sync::Arc::new(FakeImage::new());
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, seen| {
        if request.path.contains("/manifests/") && seen == 0 {
            return Reply::new(500, "internal error");
        }
        served.serve(request)
    });
    let (out, _env) = pull_fake(&registry);
    assert_contains!(assert_ok(&out, "kiln pull"), image.manifest_digest.as_str());
    let manifest_requests = registry
        .requests()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 2);

    // A 503 every time: the registry's error envelope is in the message.
    let served = std::sync::Arc::clone(&image);
    let registry = FakeRegistry::start(move |request, _| {
        if request.path.contains("/manifests/") {
            return Reply::new(
                503,
                r#"{"errors":[{"code":"UNAVAILABLE","message":"registry in maintenance until 04:00"}]}"#,
            )
            .header("Content-Type", "application/json");
        }
        served.serve(request)
    });
    let (out, _env) = pull_fake(&registry);
    assert_eq!(out.status.code(), Some(30), "{}", all_output(&out));
    assert_contains!(all_output(&out), "registry in maintenance until 04:00");
}

#[test]
fn a_push_killed_midway_then_run_again_completes_without_corruption() {
    const LIMIT: u64 = 6 * 1024 * 1024;
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let env = TestEnv::new();
    // An app with 24 MB of incompressible data, so the push takes many writes.
    let app = env.path("big-app");
    fs::create_dir_all(&app).unwrap();
    for file in ["app.sh", "greeting.txt"] {
        fs::copy(example_app().join(file), app.join(file)).unwrap();
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..24 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    fs::write(app.join("noise.bin"), noise).unwrap();
    env.build_ok(&app, &[&example_buildpack()], "big:1", &[]);

    let target = std::net::SocketAddr::from(([127, 0, 0, 1], registry.port()));
    let proxy = StallingProxy::start(target, LIMIT);
    let through_proxy = format!("{}/big/app:1", proxy.host());
    let mut child = isolated(&env)
        .args(["push", "big:1", &through_proxy])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(2);
    while !proxy.stalled(LIMIT) {
        assert!(
            Instant::now() < deadline,
            "the push never reached {LIMIT} bytes"
        );
        assert!(child.try_wait().unwrap().is_none(), "the push ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(proxy);

    let image = format!("{}/big/app:1", registry.host());
    if require("skopeo") {
        assert_eq!(skopeo_digest(&image, None), None, "a manifest was pushed");
    }
    let out = run(
        isolated(&env),
        &["push", "big:1", &image, "--format", "json"],
    );
    let report: serde_json::Value =
        serde_json::from_str(&assert_ok(&out, "kiln push again")).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    // What made it before the kill is not sent again.
    assert!(
        !strings(&report["published"]["existing"]).is_empty(),
        "{report:#}"
    );
    assert!(env.store().layout().verify().unwrap().is_ok());
    if require("skopeo") {
        assert_eq!(
            skopeo_digest(&image, None).as_deref(),
            Some(digest.as_str())
        );
        // skopeo verifies every blob's digest as it copies.
        let dir = env.path("skopeo-copy");
        sh(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{image}"),
                &format!("dir:{}", dir.display()),
            ],
        );
    }
    let fresh = TestEnv::new();
    let out = run(isolated(&fresh), &["pull", &image]);
    assert_contains!(assert_ok(&out, "kiln pull"), digest.as_str());
    assert!(fresh.store().layout().verify().unwrap().is_ok());
}

#[test]
fn a_cache_image_in_a_registry_carries_the_cache_to_a_fresh_machine() {
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let cache_ref = format!("{}/demo/cache:app", registry.host());
    // Each "runner" has its own kiln home: nothing is shared but the registry.
    let build = |env: &TestEnv, seed: &str, cache: &str| -> String {
        let app = env.app("app", &[("app.txt", "x")]);
        let bp = crate::rebuild::cacher(env, "256k");
        let mut command = isolated(env);
        command
            .args(["build", "ci/app", "--path", app.to_str().unwrap()])
            .args(["--run-image", &env.run_image(), "-b", bp.to_str().unwrap()])
            .args(["--env", &format!("SEED={seed}"), "--cache-image", cache]);
        let out = command.output().unwrap();
        assert_ok(&out, "kiln build --cache-image");
        all_output(&out)
    };
    let first = TestEnv::new();
    let log = build(&first, "1", &cache_ref);
    assert_contains!(log, "is not used");
    assert_contains!(log, &format!("Wrote cache image {cache_ref}"));
    if require("skopeo") {
        let out = sh(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{cache_ref}"),
            ],
        );
        assert_contains!(out, "io.buildpacks.lifecycle.cache.metadata");
    }

    let second = TestEnv::new();
    let log = build(&second, "2", &cache_ref);
    assert_contains!(log, &format!("Using cache image {cache_ref}"));
    assert_contains!(log, "Restored cache layer 'test/cacher:deps'");
    assert_contains!(log, "CACHE: 1");

    // A cache image that does not exist: a warning, and a build without cache.
    let third = TestEnv::new();
    let log = build(&third, "3", &format!("{}/demo/none:x", registry.host()));
    assert_contains!(log, "is not used");
    assert_contains!(log, "CACHE: none");
}

#[test]
fn a_fresh_machine_reuses_launch_layers_of_the_previous_image_in_the_registry() {
    let Some(registry) = LocalRegistry::start(None) else {
        return;
    };
    let image = format!("{}/demo/layers:1", registry.host());
    let build = |env: &TestEnv, generation: &str| -> (serde_json::Value, String) {
        let app = env.app("app", &[("app.txt", "x")]);
        let bp = crate::rebuild::maker(env);
        let mut command = isolated(env);
        command
            .args([
                "build",
                &image,
                "--publish",
                "--path",
                app.to_str().unwrap(),
            ])
            .args(["--run-image", &env.run_image(), "-b", bp.to_str().unwrap()])
            .args(["--env", &format!("GEN={generation}"), "--format", "json"]);
        let out = command.output().unwrap();
        assert_ok(&out, "kiln build --publish");
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, _) = build(&TestEnv::new(), "1");
    // Another machine, nothing local: the previous image's metadata comes from the registry,
    // and the launch layer the buildpack keeps is referenced there, not downloaded.
    let (second, log) = build(&TestEnv::new(), "2");
    assert_contains!(log, "Reusing layer 'test/maker:l' from the previous image");
    let layer = |report: &serde_json::Value| {
        report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "test/maker:l")
            .unwrap()["digest"]
            .clone()
    };
    assert_eq!(layer(&first), layer(&second));
    let existing = strings(&second["published"]["existing"]);
    assert!(
        existing.contains(&layer(&second).as_str().unwrap().to_string()),
        "{second:#}"
    );
    if require("skopeo") {
        let dir = TestEnv::new();
        sh(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{image}"),
                &format!("dir:{}", dir.path("copy").display()),
            ],
        );
    }
}
