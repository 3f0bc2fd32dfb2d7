//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so
//! building profstore needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/profile.proto",
        "proto/meta.proto",
        "proto/wal.proto",
        "proto/block.proto",
        "proto/pyroscope/types.proto",
        "proto/pyroscope/push.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
