//! Serde adapters for the `shoal_model` newtypes, which carry no serde derives of their own.
//! They encode as the bare integer, so a record reads `{"node":1,"core":3}`.

use serde::{Deserialize, Deserializer, Serializer};
use shoal_model::{NodeId, ShardId};

pub(crate) mod node {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(id.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        i32::deserialize(d).map(NodeId)
    }
}

pub(crate) mod shard {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &ShardId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(id.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ShardId, D::Error> {
        u32::deserialize(d).map(ShardId)
    }
}
