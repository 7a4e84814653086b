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

/// `Option<NodeId>` as an integer or null.
pub(crate) mod opt_node {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(&id.0),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
        Option::<i32>::deserialize(d).map(|id| id.map(NodeId))
    }
}

/// `Vec<NodeId>` as a list of integers.
pub(crate) mod nodes {
    use super::*;
    use serde::ser::SerializeSeq;

    pub(crate) fn serialize<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.0)?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeId>, D::Error> {
        Vec::<i32>::deserialize(d).map(|ids| ids.into_iter().map(NodeId).collect())
    }
}
