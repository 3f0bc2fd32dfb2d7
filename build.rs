//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so
//! building profstore needs no system `protoc`.
//!
//! With the `duckdb` feature, also points the linker at the prebuilt
//! `libduckdb.so` in `DUCKDB_LIB_DIR` (fetched by `scripts/setup-duckdb`) and
//! bakes that folder into the binaries' rpath, so they run without
//! `LD_LIBRARY_PATH`. The default build needs none of this.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/profile.proto",
        "proto/meta.proto",
        "proto/wal.proto",
        "proto/block.proto",
        "proto/peer.proto",
        "proto/pyroscope/types.proto",
        "proto/pyroscope/push.proto",
        "proto/pyroscope/querier.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    if std::env::var_os("CARGO_FEATURE_DUCKDB").is_some() {
        link_duckdb()?;
    }
    Ok(())
}

/// The rpath for the `duckdb` feature (the `duckdb` crate itself emits the
/// link search path from the same variable).
fn link_duckdb() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") else {
        return Err(
            "the `duckdb` feature needs DUCKDB_LIB_DIR, the folder holding libduckdb.so: \
             run `eval \"$(bash scripts/setup-duckdb)\"` first"
                .into(),
        );
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        format!(
            "DUCKDB_LIB_DIR={}: {e}; run `eval \"$(bash scripts/setup-duckdb)\"`",
            std::path::Path::new(&dir).display()
        )
    })?;
    if !dir.join("libduckdb.so").is_file() {
        return Err(format!(
            "no libduckdb.so in DUCKDB_LIB_DIR={}; run `eval \"$(bash scripts/setup-duckdb)\"`",
            dir.display()
        )
        .into());
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    Ok(())
}
