//! Hostile source trees and buildpack output.
