//! Metadata changes of a cluster node, on core 0: planned against the applied controller
//! state, proposed to the controller group (raft-rs forwards a follower's proposal to the
//! leader), answered once committed and applied here (see `cluster.rs`). The single-node
//! path (`controller.rs`) is unchanged; it calls these when the node is in a cluster.
//!
//! Planning on any node is safe: the plan is only a proposal, and `ClusterState::apply`, the
//! same on every node, refuses one that raced with another change (a topic created twice, a
//! partition count that moved) with an `ApplyError`, which becomes the Kafka error here.
//!
//! Kafka codes for the controller's errors are chosen in this file, in `plan_error` and
//! `apply_error`, and nowhere else.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use shoal_controller::{
    plan_allocate_producer_ids, plan_alter_configs, plan_create_partitions, plan_create_topic,
    plan_delete_topic, Applied, ApplyError, PlacementError, PlanError, Record,
};
use shoal_kafka::cluster::{ApiError, ConfigChange, NewTopic, TopicInfo};

use crate::cluster::{ClusterHandle, ProposeError};
use crate::controller::topic_info;
use crate::shard::Shard;
use crate::topic_config;

impl Shard {
    pub(crate) fn cluster_handle(&self) -> Option<Rc<ClusterHandle>> {
        self.cluster.borrow().clone()
    }

    /// The next id of this node's block, asking the controller for a new block when it is
    /// used up (one request at a time; the others wait for its block). Not under the metadata
    /// permit: applying the block's record takes that permit on this core.
    pub(crate) async fn cluster_allocate_producer_id(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
    ) -> Result<i64, ApiError> {
        let _permit = self
            .producer_id_blocks
            .acquire_permit(1)
            .await
            .map_err(|_| {
                ApiError::with_message(ResponseError::UnknownServerError, "broker stopping")
            })?;
        let (next, end) = self.producer_id_block.get();
        if next < end {
            self.producer_id_block.set((next + 1, end));
            return Ok(next);
        }
        let me = shoal_model::NodeId(self.config.node_id);
        let count = crate::controller::PRODUCER_IDS_PER_BLOCK as u32;
        let planned = plan_allocate_producer_ids(&cluster.state.borrow(), me, count);
        let record = planned.map_err(|e| producer_ids_error(&e.to_string()))?;
        match cluster.propose(record).await {
            Ok(Applied::ProducerIds { node, first, count }) if node == me => {
                assert!(count > 0, "the controller reserves non-empty blocks");
                self.producer_id_block
                    .set((first + 1, first + i64::from(count)));
                Ok(first)
            }
            Ok(other) => Err(ApiError::with_message(
                ResponseError::UnknownServerError,
                format!("the controller answered a producer id block with {other:?}"),
            )),
            Err(error) => Err(producer_ids_error(&format!("{error:?}"))),
        }
    }

    pub(crate) async fn cluster_create_topics(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<TopicInfo, ApiError>> {
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            results.push(
                self.cluster_create_topic(cluster, topic, validate_only)
                    .await,
            );
        }
        results
    }

    async fn cluster_create_topic(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<TopicInfo, ApiError> {
        let _ = topic_config::log_config(&topic.configs)?;
        let partitions = if topic.partitions == -1 {
            self.config.default_partitions
        } else {
            topic.partitions
        };
        let id = *uuid::Uuid::new_v4().as_bytes();
        let replication_factor = if topic.replication_factor == -1 {
            // The default, capped by the brokers that can take a replica now.
            let live = cluster.state.borrow().live_brokers().count().max(1);
            let live = i16::try_from(live).unwrap_or(i16::MAX);
            self.config.default_replication_factor.min(live)
        } else {
            topic.replication_factor
        };
        let record = plan_create_topic(
            &cluster.state.borrow(),
            &topic.name,
            partitions,
            replication_factor,
            topic.configs.clone(),
            id,
        )
        .map_err(|e| plan_error(&e))?;
        if validate_only {
            return Ok(planned_topic_info(&record, &topic.name));
        }
        propose_planned(cluster, Ok(record)).await?;
        let snapshot = self.snapshot();
        let meta = snapshot.topics.get(&topic.name).ok_or_else(|| {
            ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                "the topic was deleted again right after its creation",
            )
        })?;
        Ok(topic_info(&snapshot, &topic.name, meta, &self.health))
    }

    pub(crate) async fn cluster_delete_topics(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        names: Vec<String>,
    ) -> Vec<Result<(), ApiError>> {
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            if let Err(error) = refuse_hidden(&name) {
                results.push(Err(error));
                continue;
            }
            let planned = plan_delete_topic(&cluster.state.borrow(), &name);
            results.push(propose_planned(cluster, planned).await);
        }
        results
    }

    pub(crate) async fn cluster_create_partitions(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let mut results = Vec::with_capacity(topics.len());
        for (name, count) in topics {
            if let Err(error) = refuse_hidden(&name) {
                results.push(Err(error));
                continue;
            }
            let planned = plan_create_partitions(&cluster.state.borrow(), &name, count);
            let outcome = if validate_only {
                planned.map(drop).map_err(|e| plan_error(&e))
            } else {
                propose_planned(cluster, planned).await
            };
            results.push(outcome);
        }
        results
    }

    pub(crate) async fn cluster_alter_topic_configs(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let mut results = Vec::with_capacity(changes.len());
        for (name, change) in changes {
            results.push(
                self.cluster_alter(cluster, &name, change, validate_only)
                    .await,
            );
        }
        results
    }

    async fn cluster_alter(
        &self,
        cluster: &ClusterHandle,
        name: &str,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        refuse_hidden(name)?;
        let current = cluster
            .state
            .borrow()
            .topic(name)
            .map(|t| t.configs.clone())
            .ok_or_else(|| {
                ApiError::with_message(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )
            })?;
        let configs: BTreeMap<String, String> = topic_config::apply_change(&current, change)?;
        if validate_only || configs == current {
            return Ok(());
        }
        let planned = plan_alter_configs(&cluster.state.borrow(), name, configs);
        propose_planned(cluster, planned).await
    }
}

impl Shard {
    /// AlterClientQuotas on a cluster node: each entry checked against the applied state and
    /// proposed as its own record (quotas change rarely; one entry's failure leaves the
    /// others applied, as Kafka answers each entry alone).
    pub(crate) async fn cluster_alter_client_quotas(
        self: &Rc<Self>,
        cluster: &ClusterHandle,
        entries: Vec<(shoal_quotas::QuotaEntity, Vec<shoal_quotas::QuotaOp>)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let mut results = Vec::with_capacity(entries.len());
        for (entity, ops) in entries {
            let checked = cluster.state.borrow().client_quotas().check(&entity, &ops);
            let outcome = match checked {
                Err(error) => Err(shoal_kafka::error_map::quota_error(&error)),
                Ok(()) if validate_only || ops.is_empty() => Ok(()),
                Ok(()) => {
                    let record = Record::AlterClientQuotas {
                        entity,
                        ops: shoal_controller::QuotaOps(ops),
                    };
                    propose_planned(cluster, Ok(record)).await
                }
            };
            results.push(outcome);
        }
        results
    }
}

/// Proposes a planned change and waits until it is applied here: the Kafka error of the plan
/// (nothing proposed) or of the outcome.
async fn propose_planned(
    cluster: &ClusterHandle,
    planned: Result<Record, PlanError>,
) -> Result<(), ApiError> {
    let record = planned.map_err(|e| plan_error(&e))?;
    cluster
        .propose(record)
        .await
        .map(drop)
        .map_err(|e| propose_error(&e))
}

/// What CreateTopics with validate_only reports: the planned topic, not yet anywhere.
fn planned_topic_info(record: &Record, name: &str) -> TopicInfo {
    let (id, partitions, configs) = match record {
        Record::CreateTopic {
            id,
            partitions,
            configs,
            ..
        } => (*id, partitions.len(), configs.clone()),
        _ => ([0; 16], 0, BTreeMap::new()),
    };
    TopicInfo {
        name: name.to_string(),
        id,
        partitions: partitions as i32,
        produce: topic_config::produce_policy(&configs),
        configs,
        leader_epochs: vec![0; partitions],
        offline: Vec::new(),
        nodes: Vec::new(),
        replicas: Vec::new(),
        isr: Vec::new(),
    }
}

fn propose_error(error: &ProposeError) -> ApiError {
    match error {
        ProposeError::Refused(error) => apply_error(error),
        ProposeError::NoLeader => ApiError::with_message(
            ResponseError::NotController,
            "no controller leader right now (an election is under way); retry",
        ),
        ProposeError::TimedOut => ApiError::with_message(
            ResponseError::RequestTimedOut,
            "the metadata change was not committed in time; it may still be",
        ),
    }
}

/// The Kafka code of a plan the controller refused before proposing it.
pub(crate) fn plan_error(error: &PlanError) -> ApiError {
    let code = match error {
        PlanError::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        PlanError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
        PlanError::TopicIdUnusable => ResponseError::RequestTimedOut,
        PlanError::TopicNameBytes => ResponseError::InvalidTopicException,
        PlanError::InvalidPartitions(_) | PlanError::PartitionsNotIncreased { .. } => {
            ResponseError::InvalidPartitions
        }
        PlanError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        // Brokers come back (or register): a retriable code, as Kafka's TimeoutException.
        PlanError::Placement(PlacementError::NoUnfencedBrokers) => ResponseError::RequestTimedOut,
        PlanError::Placement(PlacementError::TooManyPartitions(_)) => {
            ResponseError::InvalidPartitions
        }
        PlanError::Placement(_) => ResponseError::InvalidReplicationFactor,
        PlanError::Limit(_) => ResponseError::PolicyViolation,
        PlanError::DuplicateBrokerRegistration(_) => ResponseError::DuplicateBrokerRegistration,
        _ => ResponseError::InvalidRequest,
    };
    ApiError::with_message(code, error.to_string())
}

/// InitProducerId's answer when this node has no producer id block and cannot get one now
/// (not registered yet, no controller leader, not committed in time): a code the Java client
/// and librdkafka retry InitProducerId on.
fn producer_ids_error(why: &str) -> ApiError {
    ApiError::with_message(
        ResponseError::CoordinatorLoadInProgress,
        format!("no producer id block from the controller yet: {why}"),
    )
}

/// The Kafka code of a committed change that was refused when applied (it raced).
pub(crate) fn apply_error(error: &ApplyError) -> ApiError {
    let code = match error {
        ApplyError::Quota(error) => return shoal_kafka::error_map::quota_error(error),
        ApplyError::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        ApplyError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
        ApplyError::TopicIdMismatch { .. } => ResponseError::UnknownTopicId,
        ApplyError::PartitionCountChanged { .. } => ResponseError::InvalidPartitions,
        // Retriable: a new plan draws another id or picks another broker.
        ApplyError::TopicIdInUse { .. } | ApplyError::BrokerFenced { .. } => {
            ResponseError::RequestTimedOut
        }
        ApplyError::Limit(_) => ResponseError::PolicyViolation,
        _ => ResponseError::InvalidRequest,
    };
    ApiError::with_message(code, error.to_string())
}

/// Clients cannot delete, grow or reconfigure the internal offsets topic: to them it does not
/// exist.
fn refuse_hidden(name: &str) -> Result<(), ApiError> {
    if crate::cluster_impl::is_hidden(name) {
        return Err(ApiError::with_message(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    }
    Ok(())
}
