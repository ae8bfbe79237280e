//! Schema stitching.
