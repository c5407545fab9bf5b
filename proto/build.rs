//! Generates the taskagent.v1 messages, clients and servers with protox, so
//! building needs no system `protoc`, and writes the encoded descriptor set
//! that servers register for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "taskagent/v1/tasks.proto",
        "taskagent/v1/conversations.proto",
        "taskagent/v1/agent.proto",
        "taskagent/v1/diagnostics.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("taskagent_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
