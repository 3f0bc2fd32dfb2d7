//! pprof (in progress).
