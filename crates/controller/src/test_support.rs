//! Builders shared by the unit tests.

use std::collections::BTreeMap;

use shoal_model::{NodeId, ShardId};

use crate::record::{PartitionAssignment, Record, Registration, Replica};
use crate::state::{Applied, ClusterState};

pub(crate) fn registration(node: i32, cores: u32, rack: Option<&str>) -> Registration {
    Registration {
        node: NodeId(node),
        incarnation: 1,
        kafka_host: format!("b{node}.test"),
        kafka_port: 9092,
        rpc_addr: format!("b{node}.test:9400"),
        rack: rack.map(str::to_string),
        cores,
    }
}

pub(crate) fn replica(node: i32, core: u32) -> Replica {
    Replica {
        node: NodeId(node),
        core: ShardId(core),
    }
}

pub(crate) fn assignment(node: i32, core: u32) -> PartitionAssignment {
    PartitionAssignment::new(vec![replica(node, core)])
}

pub(crate) fn topic_id(seed: u8) -> [u8; 16] {
    [seed; 16]
}

/// Applies `record` at the next index, which it returns with the result.
pub(crate) fn apply_next(
    state: &mut ClusterState,
    record: &Record,
) -> Result<Applied, crate::ApplyError> {
    let index = state.applied_index() + 1;
    let applied = state.apply(index, record);
    assert_eq!(state.applied_index(), index);
    assert_eq!(state.check(), Ok(()));
    applied
}

/// A state whose brokers `(node, cores, rack)` are registered and unfenced.
pub(crate) fn cluster(brokers: &[(i32, u32, Option<&str>)]) -> ClusterState {
    let mut state = ClusterState::new("test-cluster".into());
    for &(node, cores, rack) in brokers {
        let record = Record::RegisterBroker(registration(node, cores, rack));
        let Ok(Applied::BrokerRegistered { broker_epoch, .. }) = apply_next(&mut state, &record)
        else {
            panic!("registering broker {node}");
        };
        let unfence = Record::UnfenceBroker {
            node: NodeId(node),
            broker_epoch,
        };
        assert!(apply_next(&mut state, &unfence).is_ok());
    }
    state
}

pub(crate) fn create_topic(
    state: &mut ClusterState,
    name: &str,
    seed: u8,
    partitions: Vec<PartitionAssignment>,
) -> Result<Applied, crate::ApplyError> {
    let record = Record::CreateTopic {
        name: name.into(),
        id: topic_id(seed),
        partitions,
        configs: BTreeMap::new(),
    };
    apply_next(state, &record)
}
