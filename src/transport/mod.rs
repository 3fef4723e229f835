//! Where images come from and go to: one module per transport, each reading and writing
//! behind the one [`Transport`] trait.
//!
//! | module | reference | reads by | writes by |
//! |---|---|---|---|
//! | [`store`] | `name[:tag]` | resolving the name in kiln's store | naming the image there |
//! | [`oci`] | `oci:DIR[:NAME]` | reading the layout in place | copying blobs, then `index.json` |
//! | [`oci_archive`] | `oci-archive:FILE[:NAME]` | importing blobs into the store (verified) | writing a new file, renamed over the old |
//! | [`docker_archive`] | `docker-archive:FILE[:NAME]` | importing layers into the store (verified) | writing a new file, renamed over the old |
//! | [`docker_daemon`] | `docker-daemon:NAME` | saving a docker archive from the daemon | loading a docker archive into it |
//! | [`registry`] | `host/repo:tag`, `docker://…` | pulling into the store (by the pull policy) | pushing |
//!
//! [`reader`] picks the transport of an [`ImageReference`](crate::image::reference::ImageReference), [`writer`] that of a
//! [`publish::Destination`] (a reference that names where a built image goes; it always has
//! a name and is never `scratch`). [`fetch`] and [`publish()`] are the two entry
//! points; image formats themselves live in [`crate::image`].

pub mod attached;
pub mod context;
pub mod docker_archive;
pub mod docker_daemon;
pub mod oci;
pub mod oci_archive;
pub mod publish;
pub mod registry;
pub mod select;
pub mod store;

pub use attached::{Attached, attached};
pub use context::{Context, Transport, Transports};
pub use docker_archive::write_docker_archive;
pub use oci_archive::write_archive;
pub use registry::pull;
pub use select::{fetch, load, publish, reader, writer};
