//! Hostile images, archives and registries.
