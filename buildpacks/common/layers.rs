//! Layers whose contents stay good while their inputs do.

use libcnb::Buildpack;
use libcnb::build::BuildContext;
use libcnb::data::layer::LayerName;
use libcnb::layer::{
    CachedLayerDefinition, InvalidMetadataAction, LayerRef, LayerState, RestoredLayerAction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A keyed layer and whether its contents were reused.
pub(crate) type Keyed<B> = (LayerRef<B, (), ()>, bool);

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
    let layer = context.cached_layer(
        name,
        CachedLayerDefinition {
            build,
            launch,
            invalid_metadata_action: &|_| InvalidMetadataAction::DeleteLayer,
            restored_layer_action: &|old: &M, _| {
                if old == key {
                    RestoredLayerAction::KeepLayer
                } else {
                    RestoredLayerAction::DeleteLayer
                }
            },
        },
    )?;
    let reused = matches!(layer.state, LayerState::Restored { .. });
    if !reused {
        layer.write_metadata(key)?;
    }
    Ok((layer, reused))
}
