//! The gRPC contract of taskagent: package `taskagent.v1`, generated from
//! `proto/taskagent/v1/*.proto`. Every service and client uses these types.

/// Messages, clients (`*_client`) and servers (`*_server`) of `taskagent.v1`.
pub mod v1 {
    tonic::include_proto!("taskagent.v1");

    /// Encoded `FileDescriptorSet` of `taskagent.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/taskagent_descriptor.bin"));
}

pub use v1::*;
