//! Writes a minimal run image into an OCI layout using kiln's layer and image writers:
//! static busybox with its applets, `/etc/passwd` and `/etc/group` with the CNB user `cnb`
//! (1000:1000), and the CNB run-image settings (`CNB_USER_ID`, `CNB_GROUP_ID`, `User`,
//! distro labels). The quickstart and the tests use it as `--run-image`.
//!
//! ```sh
//! cargo run --example busybox_run_image -- DIR [NAME]
//! kiln build myapp --run-image oci:DIR:NAME …
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln::image::layout::OciLayout;
use kiln::layer::{LayerSpec, write_layer};
use kiln::oci::{ConfigBuilder, ImageConfigurationBuilder, MediaType, RootFsBuilder};

/// Busybox applets linked into `/bin`.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "env", "id", "ls", "pwd", "printf", "sleep", "test", "true", "false",
    "stat", "wc", "head", "grep", "sed", "tr",
];

/// Writes the run image into the layout at `dir` (created if needed) as `name`.
pub fn write_run_image(dir: &Path, name: &str) -> Result<(), Box<dyn Error>> {
    write_run_image_as(dir, name, ("busybox", "1"))
}

/// Like [`write_run_image`], with other distro labels (`("debian", "12")`): what kiln's
/// buildpacks see as the run image's distribution.
pub fn write_run_image_as(
    dir: &Path,
    name: &str,
    distro: (&str, &str),
) -> Result<(), Box<dyn Error>> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("busybox is not installed; install the busybox-static package")?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    for d in ["bin", "etc", "home/cnb", "tmp"] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::copy(busybox, r.join("bin/busybox"))?;
    fs::set_permissions(r.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet))?;
    }
    fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ncnb:x:1000:1000:cnb:/home/cnb:/bin/sh\n",
    )?;
    fs::write(r.join("etc/group"), "root:x:0:\ncnb:x:1000:\n")?;
    fs::write(
        r.join("etc/os-release"),
        "ID=busybox\nVERSION_ID=1\nPRETTY_NAME=\"kiln example run image\"\n",
    )?;

    let layout = OciLayout::ensure(dir)?;
    let blob = write_layer(
        &layout,
        &LayerSpec {
            parents: vec![],
            source: r.to_path_buf(),
            target: String::new(),
            only: None,
            uid: 0,
            gid: 0,
            entry_metadata: None,
        },
    )?;
    let platform = kiln::TargetPlatform::host();
    let labels = HashMap::from([
        (
            "io.buildpacks.base.distro.name".to_string(),
            distro.0.to_string(),
        ),
        (
            "io.buildpacks.base.distro.version".to_string(),
            distro.1.to_string(),
        ),
    ]);
    let config = ImageConfigurationBuilder::default()
        .architecture(platform.architecture.as_str())
        .os(platform.os.as_str())
        .created(kiln::reproducible::created_timestamp(None))
        .config(
            ConfigBuilder::default()
                .env(vec![
                    "PATH=/bin".to_string(),
                    "CNB_USER_ID=1000".to_string(),
                    "CNB_GROUP_ID=1000".to_string(),
                ])
                .user("1000:1000")
                .labels(labels)
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![blob.diff_id.to_string()])
                .build()?,
        )
        .build()?;
    let layer = kiln::image::descriptor(MediaType::ImageLayerGzip, &blob.digest, blob.size);
    let written = kiln::image::write_image(&layout, vec![layer], &config)?;
    layout.tag(&written.descriptor, name)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: busybox_run_image DIR [NAME]")?;
    let name = args.next().unwrap_or_else(|| "latest".to_string());
    write_run_image(Path::new(&dir), &name)?;
    println!("wrote run image oci:{dir}:{name}");
    Ok(())
}
