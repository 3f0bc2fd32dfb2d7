//! chunkenc (in progress).
