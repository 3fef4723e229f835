//! Layers whose contents stay good while their inputs do.

use libcnb::Buildpack;
use libcnb::build::BuildContext;
use libcnb::data::layer::LayerName;
use libcnb::layer::{
    CachedLayerDefinition, InvalidMetadataAction, LayerRef, LayerState, RestoredLayerAction,
    UncachedLayerDefinition,
};
use libcnb::layer_env::{LayerEnv, ModificationBehavior, Scope};
use std::path::PathBuf;

use super::{CnbResult, Error};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An uncached launch layer `name` holding only environment variables (`env.launch/`):
/// rebuilt every build, a few bytes.
pub(crate) fn launch_env<B: Buildpack>(
    context: &BuildContext<B>,
    name: &LayerName,
    env: &LayerEnv,
) -> libcnb::Result<(), B::Error> {
    launch_only(context, name)?.write_env(env)
}

/// A new uncached layer that is only part of the image (`launch = true`).
pub(crate) fn launch_only<B: Buildpack>(
    context: &BuildContext<B>,
    name: &LayerName,
) -> libcnb::Result<LayerRef<B, (), ()>, B::Error> {
    context.uncached_layer(
        name,
        UncachedLayerDefinition {
            build: false,
            launch: true,
        },
    )
}

/// Launch-time defaults (`env.launch/NAME.default`): the image has them unless the user sets
/// them (`podman run -e`).
pub(crate) fn launch_defaults(vars: &[(&str, &str)]) -> LayerEnv {
    vars.iter().fold(LayerEnv::new(), |env, (name, value)| {
        env.chainable_insert(Scope::Launch, ModificationBehavior::Default, *name, *value)
    })
}

/// The `bin/` directory of a new uncached launch layer `name` (on `PATH` in the image):
/// where compiled programs go.
pub(crate) fn launch_bin<B: Buildpack<Error = Error>>(
    context: &BuildContext<B>,
    name: &LayerName,
) -> CnbResult<PathBuf> {
    let dir = launch_only(context, name)?.path().join("bin");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A keyed layer and whether its contents were reused.
pub(crate) type Keyed<B> = (LayerRef<B, (), bool>, bool);

/// The key of a pure cache layer (downloads, compiler caches): any contents are good, and
/// bumping the generation empties it.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Generation {
    /// Bumped when the layout of the cache changes.
    pub(crate) generation: u32,
}

/// The first generation.
pub(crate) const FIRST_GENERATION: Generation = Generation { generation: 1 };

/// A cached layer (`cache = true`) whose contents are reusable exactly while its metadata
/// equals `key` (a digest of the lockfile, the tool versions…): restored by the platform and
/// kept when the key matches, emptied otherwise. Returns the layer and whether it was
/// reused; on a miss the caller fills it and the key is already written.
pub(crate) fn keyed<B, M>(
    context: &BuildContext<B>,
    name: &LayerName,
    build: bool,
    launch: bool,
    key: &M,
) -> libcnb::Result<Keyed<B>, B::Error>
where
    B: Buildpack,
    M: Serialize + DeserializeOwned + PartialEq,
{
    let (layer, reuse) = keyed_incremental(context, name, build, launch, key, |_, _| false)?;
    Ok((layer, reuse == Reuse::All))
}

/// A layer of [`keyed_incremental`] and how much of it is still good.
pub(crate) type Incremental<B> = (LayerRef<B, (), bool>, Reuse);

/// How much of a restored cached layer is still good (see [`keyed_incremental`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// All of it: the key is the same.
    All,
    /// Its contents can be brought up to date in place (the key changed compatibly).
    InPlace,
    /// Nothing: the layer is new and empty.
    Nothing,
}

/// A cached layer whose metadata is `key`: kept whole when the restored key equals it, kept
/// to be updated in place when `compatible(old, key)`, emptied otherwise. The new key is
/// written; the caller brings the contents up to date.
pub(crate) fn keyed_incremental<B, M>(
    context: &BuildContext<B>,
    name: &LayerName,
    build: bool,
    launch: bool,
    key: &M,
    compatible: impl Fn(&M, &M) -> bool,
) -> libcnb::Result<Incremental<B>, B::Error>
where
    B: Buildpack,
    M: Serialize + DeserializeOwned + PartialEq,
{
    let layer = context.cached_layer(
        name,
        CachedLayerDefinition {
            build,
            launch,
            invalid_metadata_action: &|_| InvalidMetadataAction::DeleteLayer,
            restored_layer_action: &|old: &M, _| {
                if old == key {
                    (RestoredLayerAction::KeepLayer, true)
                } else if compatible(old, key) {
                    (RestoredLayerAction::KeepLayer, false)
                } else {
                    (RestoredLayerAction::DeleteLayer, false)
                }
            },
        },
    )?;
    let reuse = match layer.state {
        LayerState::Restored { cause: true } => Reuse::All,
        LayerState::Restored { cause: false } => Reuse::InPlace,
        LayerState::Empty { .. } => Reuse::Nothing,
    };
    if reuse != Reuse::All {
        layer.write_metadata(key)?;
    }
    Ok((layer, reuse))
}
