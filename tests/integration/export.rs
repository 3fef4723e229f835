//! Exported images: layout, config, labels, validation by independent tools, podman runs.

use std::fs;

use crate::assert_contains;
use crate::util::{
    BuildpackSpec, Podman, TestEnv, example_app, example_buildpack, layer_entries, oci, repo, sh,
    validate_layout, validate_schema, write_buildpack,
};

fn build_example(env: &TestEnv, out: &str) {
    env.build_ok(&example_app(), &[&example_buildpack()], out, &[]);
}

#[test]
fn example_image_validates_and_runs_under_podman_as_cnb_user() {
    let env = TestEnv::new();
    let layout = env.path("out");
    build_example(&env, &oci(&layout, "hello"));

    let rootfs = validate_layout(&layout, "hello", &env.path("scratch"));
    if let Some(rootfs) = rootfs {
        assert!(rootfs.join("workspace/app.sh").is_file());
        assert!(
            rootfs
                .join("layers/examples_shell/greeting/bin/say-greeting")
                .is_file()
        );
        assert!(
            rootfs.join("bin/busybox").is_file(),
            "run image layers come first"
        );
    }

    let Some(podman) = Podman::new() else { return };
    let image = oci(&layout, "hello");
    let out = podman.run(&image, &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "podman run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "Hello from kiln! I run as uid 1000 in /workspace with args: default-arg"
    );
    // Arguments given at run time replace the process's default args, as with the CNB launcher.
    let out = podman.run(&image, &[], &["a", "b"]);
    assert_contains!(String::from_utf8_lossy(&out.stdout), "with args: a b");
    // The other process, by entrypoint, with the launch env (bin on PATH, GREETING).
    let out = podman.run(&image, &["--entrypoint", "say-greeting"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello");
}

#[test]
fn oci_archive_output_loads_into_podman() {
    let env = TestEnv::new();
    let archive = env.path("hello.oci.tar");
    build_example(
        &env,
        &format!(
            "oci-archive:{}:localhost/kiln-test-archive:1",
            archive.display()
        ),
    );
    assert!(archive.is_file());
    let Some(podman) = Podman::new() else { return };
    let out = podman
        .command()
        .args(["load", "-i", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman.run("localhost/kiln-test-archive:1", &[], &[]);
    assert_contains!(String::from_utf8_lossy(&out.stdout), "Hello from kiln!");
}

#[test]
fn store_output_is_a_valid_layout_and_listed() {
    let env = TestEnv::new();
    let run_image = env.run_image();
    env.ok(&[
        "build",
        "myapp:1.0",
        "--path",
        repo().join("examples/hello-shell").to_str().unwrap(),
        "--buildpack",
        repo().join("examples/buildpacks/shell").to_str().unwrap(),
        "--run-image",
        &run_image,
    ]);
    let images = env.ok(&["images"]);
    assert_contains!(images, "myapp:1.0");
    validate_layout(&env.home().join("store"), "myapp:1.0", &env.path("scratch"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["images", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "myapp:1.0");
    env.ok(&["rmi", "myapp:1.0"]);
    assert!(!env.ok(&["images"]).contains("myapp"));
    assert!(env.store().layout().verify().unwrap().is_ok());
    assert!(
        fs::read_dir(env.home().join("work"))
            .unwrap()
            .next()
            .is_none(),
        "work dirs are removed"
    );
}

#[test]
fn kiln_layers_are_owned_by_the_cnb_user_and_normalized() {
    let env = TestEnv::new();
    let layout = env.path("out");
    build_example(&env, &oci(&layout, "hello"));
    let json = env.inspect(&oci(&layout, "hello"));
    let layers = json["layers"].as_array().unwrap();
    // The run image's layer is copied untouched (root-owned busybox).
    let base = layer_entries(&layout, layers[0]["digest"].as_str().unwrap());
    assert!(base.iter().any(|e| e.path == "bin/busybox" && e.uid == 0));
    let launch = layer_entries(&layout, layers[1]["digest"].as_str().unwrap());
    let paths: Vec<&str> = launch.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "layers/",
            "layers/examples_shell/",
            "layers/examples_shell/greeting/",
            "layers/examples_shell/greeting/bin/",
            "layers/examples_shell/greeting/bin/say-greeting",
            "layers/examples_shell/greeting/env.launch/",
            "layers/examples_shell/greeting/env.launch/GREETING.default",
        ]
    );
    let app = layer_entries(&layout, layers[2]["digest"].as_str().unwrap());
    for crate::util::TarEntry {
        path,
        uid,
        gid,
        mode,
    } in launch.iter().chain(&app)
    {
        assert_eq!((*uid, *gid), (1000, 1000), "{path}");
        let expected =
            if path.ends_with('/') || path.ends_with("say-greeting") || path.ends_with("app.sh") {
                0o755
            } else {
                0o644
            };
        assert_eq!(*mode, expected, "{path}");
    }
    assert!(app.iter().any(|e| e.path == "workspace/app.sh"));
}

#[test]
fn scratch_and_oci_archive_run_images() {
    let env = TestEnv::new();
    // A shell app on scratch could not start: the launch check refuses it.
    let stderr = env.fails(
        &[
            "build",
            "--path",
            repo().join("examples/hello-shell").to_str().unwrap(),
            "-b",
            repo().join("examples/buildpacks/shell").to_str().unwrap(),
            "--run-image",
            "scratch",
            "--output",
            &oci(&env.path("out"), "sh"),
        ],
        53,
    );
    assert_contains!(stderr, "`/bin/sh` does not exist in the image");
    // scratch: no base layers, no user, root ownership; a static program runs on it.
    let app = env.path("static-app");
    fs::create_dir_all(&app).unwrap();
    fs::copy("/usr/bin/busybox", app.join("busybox")).unwrap();
    let buildpack = write_buildpack(
        &env.path("bp"),
        &BuildpackSpec {
            build: r#"printf '[[processes]]\ntype = "web"\ncommand = ["/workspace/busybox", "true"]\ndefault = true\n' > "$CNB_LAYERS_DIR/launch.toml""#,
            ..BuildpackSpec::default()
        },
    );
    let out = oci(&env.path("out"), "s");
    env.ok(&[
        "build",
        "--path",
        app.to_str().unwrap(),
        "-b",
        buildpack.to_str().unwrap(),
        "--run-image",
        "scratch",
        "--output",
        &out,
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--format", "json", &out])).unwrap();
    assert_eq!(json["layers"].as_array().unwrap().len(), 1);
    assert_eq!(json["user"], serde_json::Value::Null);
    assert_eq!(json["platform"], kiln::TargetPlatform::host().to_string());
    let app = layer_entries(
        &env.path("out"),
        json["layers"][0]["digest"].as_str().unwrap(),
    );
    assert!(app.iter().all(|e| (e.uid, e.gid) == (0, 0)));
    validate_layout(&env.path("out"), "s", &env.path("scratch"));

    // An OCI archive as run image: kiln writes one, then builds on it.
    let run_archive = env.path("run.tar");
    let run_image = env.run_image();
    // Re-export the busybox layout as an archive with tar, as `skopeo copy … oci-archive:` would.
    let status = std::process::Command::new("tar")
        .args([
            "-C",
            env.path("run-image").to_str().unwrap(),
            "-cf",
            run_archive.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let from_archive = env.ok(&[
        "build",
        "--format",
        "json",
        "--path",
        repo().join("examples/hello-shell").to_str().unwrap(),
        "-b",
        repo().join("examples/buildpacks/shell").to_str().unwrap(),
        "--run-image",
        &format!("oci-archive:{}:run:1", run_archive.display()),
        "--output",
        &oci(&env.path("out2"), "a"),
    ]);
    let from_layout = env.ok(&[
        "build",
        "--format",
        "json",
        "--path",
        repo().join("examples/hello-shell").to_str().unwrap(),
        "-b",
        repo().join("examples/buildpacks/shell").to_str().unwrap(),
        "--run-image",
        &run_image,
        "--output",
        &oci(&env.path("out2"), "b"),
    ]);
    let digest =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["manifest_digest"].clone();
    assert_eq!(
        digest(&from_archive),
        digest(&from_layout),
        "same run image, however it is read"
    );
}

#[test]
fn multi_platform_run_images_are_selected_by_platform() {
    use kiln::oci::{ImageIndexBuilder, ImageManifest, MediaType, PlatformBuilder};

    let env = TestEnv::new();
    env.run_image();
    let layout = kiln::image::layout::OciLayout::open(env.path("run-image")).unwrap();
    let host = kiln::TargetPlatform::host();
    let amd = layout.read_index().unwrap().manifests()[0].clone();
    let manifest: ImageManifest =
        serde_json::from_slice(&layout.read_blob(amd.digest()).unwrap()).unwrap();
    let mut config: kiln::oci::ImageConfiguration =
        serde_json::from_slice(&layout.read_blob(manifest.config().digest()).unwrap()).unwrap();
    let other_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    config.set_architecture(other_arch.into());
    let other = kiln::image::write_image(&layout, manifest.layers().clone(), &config).unwrap();
    let with_platform = |d: &kiln::oci::Descriptor, arch: &str| {
        let mut d = d.clone();
        d.set_annotations(None);
        d.set_platform(Some(
            PlatformBuilder::default()
                .os("linux")
                .architecture(arch)
                .build()
                .unwrap(),
        ));
        d
    };
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![
            with_platform(&amd, &host.architecture),
            with_platform(&other.descriptor, other_arch),
        ])
        .build()
        .unwrap();
    let bytes = kiln::reproducible::canonical_json(&index).unwrap();
    let (digest, size) = layout.write_blob(&bytes).unwrap();
    layout
        .tag(
            &kiln::image::descriptor(MediaType::ImageIndex, &digest, size),
            "multi",
        )
        .unwrap();
    // umoci cannot unpack an index ("tag is ambiguous"); the schema and digest checks can.
    validate_schema(&env.path("run-image"), "multi");

    let multi = oci(&env.path("run-image"), "multi");
    let build = |platform: Option<&str>| {
        let mut args = vec![
            "build".to_string(),
            "--format".into(),
            "json".into(),
            "--path".into(),
            repo().join("examples/hello-shell").display().to_string(),
            "-b".into(),
            repo()
                .join("examples/buildpacks/shell")
                .display()
                .to_string(),
            "--run-image".into(),
            multi.clone(),
            "--output".into(),
            oci(&env.path("out"), "img"),
        ];
        if let Some(p) = platform {
            args.extend(["--platform".into(), p.into()]);
        }
        env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let inspect = || -> serde_json::Value {
        serde_json::from_str(&env.ok(&[
            "inspect",
            "--format",
            "json",
            &oci(&env.path("out"), "img"),
        ]))
        .unwrap()
    };
    assert!(build(None).status.success());
    assert_eq!(inspect()["platform"], host.to_string());
    let out = build(Some(&format!("linux/{other_arch}")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(inspect()["platform"], format!("linux/{other_arch}"));
    let out = build(Some("linux/s390x"));
    assert_eq!(out.status.code(), Some(30));
    assert_contains!(
        String::from_utf8_lossy(&out.stderr),
        "has no manifest for linux/s390x"
    );
}

#[test]
fn kilnignore_and_git_are_left_out_of_the_image() {
    let env = TestEnv::new();
    let app = env.app(
        "app",
        &[
            ("app.sh", "echo hi\n"),
            (".kilnignore", "*.log\n/secrets/\n"),
            ("debug.log", "noise"),
            ("secrets/key", "hunter2"),
            (".git/config", "[core]"),
            ("src/keep.txt", "keep"),
        ],
    );
    let out = oci(&env.path("out"), "img");
    env.build_ok(&app, &[&example_buildpack()], &out, &[]);
    let json = env.inspect(&out);
    let app_layer = json["layers"].as_array().unwrap().last().unwrap()["digest"].clone();
    let mut paths: Vec<String> = layer_entries(&env.path("out"), app_layer.as_str().unwrap())
        .into_iter()
        .map(|e| e.path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "workspace/",
            "workspace/.kilnignore",
            "workspace/app.sh",
            "workspace/src/",
            "workspace/src/keep.txt"
        ]
    );
}

#[test]
fn without_a_run_image_the_stack_flavour_the_buildpacks_need_is_built_and_used() {
    let env = TestEnv::new();
    let detect: serde_json::Value = serde_json::from_str(&env.ok(&[
        "detect",
        "--format",
        "json",
        "--path",
        example_app().to_str().unwrap(),
        "-b",
        example_buildpack().to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(detect["run_image"], "kiln/stacks/trixie-shell:latest");

    let out = oci(&env.path("out"), "hello");
    let build = || {
        let output = env
            .kiln()
            .args(["build", "--format", "json", "--output", &out])
            .args(["--path", example_app().to_str().unwrap()])
            .args(["-b", example_buildpack().to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        (
            serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap(),
            stderr,
        )
    };
    let (report, stderr) = build();
    assert_contains!(stderr, "Building kiln/stacks/trixie-shell:latest");
    assert_eq!(report["run_image"], "kiln/stacks/trixie-shell:latest");
    // The second build reuses the run image.
    let (again, stderr) = build();
    assert!(!stderr.contains("Building kiln/stacks/"));
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);

    let json = env.inspect(&out);
    assert_eq!(json["labels"]["io.buildpacks.base.distro.name"], "debian");
    assert_eq!(json["user"], "1000:1000");
    let Some(podman) = Podman::new() else { return };
    let run = podman.run(&out, &[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "Hello from kiln! I run as uid 1000 in /workspace with args: default-arg",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Layers over 4 MiB are a series of gzip members (README, "Layer compression"): GNU gzip,
/// umoci (Go) and podman read all of them.
#[test]
fn a_large_layer_is_a_series_of_gzip_members_that_other_tools_read_whole() {
    let env = TestEnv::new();
    let app = env.app("app", &[]);
    for file in ["app.sh", "greeting.txt"] {
        fs::copy(example_app().join(file), app.join(file)).unwrap();
    }
    // 12 MiB that barely compress, sorted before app.sh in the layer: the app runs only if
    // its reader got past the first members.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..12 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    fs::write(app.join("a-data.bin"), &data).unwrap();
    let layout = env.path("out");
    env.build_ok(&app, &[&example_buildpack()], &oci(&layout, "big"), &[]);

    let json = env.inspect(&oci(&layout, "big"));
    let layer = json["layers"].as_array().unwrap().last().unwrap().clone();
    let blob_path = layout.join("blobs/sha256").join(
        layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let blob = fs::read(&blob_path).unwrap();
    let members = blob
        .windows(8)
        .filter(|w| w == &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0])
        .count();
    assert!(members >= 3, "{members} gzip members in a 12 MiB layer");
    // GNU gzip: the whole stream, with the layer's diff_id.
    let unzipped = sh(
        "sh",
        &[
            "-c",
            &format!("gzip -dc '{}' | sha256sum", blob_path.display()),
        ],
    );
    let diff_id = layer["diff_id"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{}", unzipped.split_whitespace().next().unwrap()),
        diff_id
    );
    if let Some(rootfs) = validate_layout(&layout, "big", &env.path("scratch")) {
        assert!(fs::read(rootfs.join("workspace/a-data.bin")).unwrap() == data);
        assert!(rootfs.join("workspace/app.sh").is_file());
    }
    let Some(podman) = Podman::new() else { return };
    let out = podman.run(&oci(&layout, "big"), &[], &[]);
    assert_contains!(String::from_utf8_lossy(&out.stdout), "Hello from kiln!");
}
