//! Embeds kiln as a library: builds an app with buildpacks into kiln's store and prints
//! the pipeline's events as they arrive.
//!
//! ```sh
//! cargo run --example build_image -- APP_DIR BUILDPACK RUN_IMAGE IMAGE_NAME
//! cargo run --example build_image -- examples/hello-shell examples/buildpacks/shell \
//!     oci:/tmp/run:run hello
//! ```
//!
//! BUILDPACK is a directory or a built-in id such as `kiln/procfile`.

use std::error::Error;
use std::path::PathBuf;

use kiln::{
    BuildOptions, BuildpackRef, BuildpackSelection, CancelToken, Destination, Event, Store,
};

fn main() -> Result<(), Box<dyn Error>> {
    // The built-in buildpacks run as this program's bin/detect and bin/build (see
    // kiln::buildpack::builtin): when started that way, run the buildpack and exit.
    kiln::buildpack::builtin::run_if_invoked();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [app, buildpack, run_image, name] = args.as_slice() else {
        return Err("usage: build_image APP_DIR BUILDPACK_DIR RUN_IMAGE IMAGE_NAME".into());
    };

    let store = Store::open(Store::default_root()?)?;
    // What a build cannot do without goes to `new`; every other option has a default.
    let mut options = BuildOptions::new(PathBuf::from(app), Destination::Store(name.parse()?));
    options.buildpacks = BuildpackSelection {
        buildpacks: vec![BuildpackRef::parse(buildpack)],
        ..BuildpackSelection::default()
    };
    options.run_image = Some(run_image.parse()?);

    // Events arrive on the thread doing the work; a platform would forward them to its UI.
    let events = |event: &Event| match event {
        Event::PhaseStarted(phase) => println!("[{phase}]"),
        Event::BuildpackOutput { id, line } => println!("  {id} | {line}"),
        Event::Layer { name, size, .. } => println!("  layer {name}: {size} bytes"),
        Event::Warning(w) => println!("  warning: {w}"),
        _ => {}
    };
    // A CancelToken can be handed to another thread (or a signal handler) to stop the build.
    let cancel = CancelToken::new();
    match kiln::build(&store, &options, &events, &cancel) {
        Ok(report) => {
            println!("built {} ({})", report.image, report.manifest_digest);
            Ok(())
        }
        // Errors are typed: a platform can tell "no buildpack applies" from a failure.
        Err(kiln::Error::NothingDetected { results }) => {
            for r in results {
                println!("{}@{}: {}", r.id, r.version, r.status);
            }
            Err("no buildpack applies to this app".into())
        }
        Err(e) => Err(e.into()),
    }
}
