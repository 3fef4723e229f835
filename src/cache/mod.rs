//! State kept between builds, in one place: everything a build leaves for the next one to be
//! faster, and nothing an image depends on.
//!
//! | module | what it keeps | where (under `$KILN_HOME`) |
//! |---|---|---|
//! | `layers` | the layer cache: each destination's `cache = true` layers | `cache/layers/<key>.json` + blobs in the store |
//! | `image` | the layer cache kept as an image (`--cache-image`) | a registry, layout or archive |
//! | `record` | the build record (inputs, image) and kept cache layer directories | `cache/builds/<key>/` |
//! | `memo` | what each layer of the last export was (to skip compressing it again) | `cache/exports/<key>.json` |
//! | [`gc`] | garbage collection of all of the above and of unreferenced blobs | — |
//!
//! `<key>` is the destination's key, [`crate::store::Store::state_for`]. The store owns these
//! paths; nothing here depends on the lifecycle's orchestrator, and losing any of it only
//! makes the next build slower.

// Garbage collection is public (`kiln cache prune`); the state itself is the crate's own.
// (`dead_code`: a few accessors only tests use, public until issue 15 narrowed the API.)
pub mod gc;
pub(crate) mod image;
#[allow(dead_code)]
pub(crate) mod layers;
#[allow(dead_code)]
pub(crate) mod memo;
#[allow(dead_code)]
pub(crate) mod record;
pub(crate) mod rootfs;

pub(crate) use layers::{CacheMetadata, LayerCache, Sources};
