//! The group state machine (Kafka's classic `GroupCoordinator`).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::{
    CommitRequest, CommittedOffset, Config, GroupDescription, GroupListing, GroupOp, GroupReply,
    GroupResult, GroupSnapshot, GroupWait, Handled, HeartbeatRequest, JoinMember, JoinRequest,
    JoinResponse, LeaveMember, MemberDescription, MemberSnapshot, Offsets, Pending, Record,
    ResponseError, SyncRequest, SyncResponse, Tp,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen_ms: i64,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn fail_waiters(&mut self, error: ResponseError) {
        if let Some(waiter) = self.join_waiter.take() {
            let _ = waiter.send(JoinResponse::error(error, &self.id));
        }
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(SyncResponse::error(error));
        }
    }

    fn update(&mut self, req: &JoinRequest, now_ms: i64) {
        self.client_id.clone_from(&req.client_id);
        self.client_host.clone_from(&req.client_host);
        self.session_timeout_ms = req.session_timeout_ms;
        self.rebalance_timeout_ms = req.rebalance_timeout_ms;
        self.protocol_type.clone_from(&req.protocol_type);
        self.protocols.clone_from(&req.protocols);
        self.last_seen_ms = now_ms;
    }

    fn snapshot(&self) -> MemberSnapshot {
        MemberSnapshot {
            id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocols: self
                .protocols
                .iter()
                .map(|(name, metadata)| (name.clone(), metadata.to_vec()))
                .collect(),
            assignment: self.assignment.to_vec(),
        }
    }
}

struct Group {
    id: String,
    state: State,
    state_since_ms: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back.
    pending: BTreeMap<String, i64>,
    initial_deadline_ms: i64,
    rebalance_deadline_ms: i64,
    offsets: Offsets,
}

impl Group {
    fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            initial_deadline_ms: now_ms,
            rebalance_deadline_ms: now_ms,
            offsets: Offsets::new(),
        }
    }

    fn static_owner(&self, instance_id: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.as_str())
    }

    /// FENCED_INSTANCE_ID when `instance_id` belongs to another member id.
    fn check_fenced(&self, member_id: &str, instance_id: Option<&str>) -> GroupResult<()> {
        match instance_id.and_then(|iid| self.static_owner(iid)) {
            Some(owner) if owner != member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            names.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        names
    }

    fn accepts(&self, req: &JoinRequest) -> bool {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        let candidates = self.candidates();
        req.protocols
            .iter()
            .any(|(name, _)| candidates.contains(name))
    }

    /// Each member votes for its most preferred candidate; most votes wins, ties go to the
    /// earlier preference of the first member.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for name in &candidates {
            let count = votes.get(name.as_str()).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            group: self.id.clone(),
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_ms: self.state_since_ms,
            members: self.members.values().map(Member::snapshot).collect(),
        }
    }

    fn join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }
}

/// One core's groups.
pub struct Coordinator {
    config: Config,
    groups: BTreeMap<String, Group>,
    records: Vec<Record>,
}

impl Coordinator {
    pub fn new(config: Config) -> Coordinator {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            records: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records to persist, in the order the changes happened.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// Every live record (a compacted image of the state), for rewriting the internal log.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for group in self.groups.values() {
            out.push(Record::Group(group.snapshot()));
            for (tp, offset) in &group.offsets {
                out.push(Record::Offset {
                    group: group.id.clone(),
                    tp: tp.clone(),
                    offset: offset.clone(),
                });
            }
        }
        out
    }

    /// Rebuilds state from the internal log, oldest record first. Restored members get a
    /// fresh session from `now_ms`.
    pub fn replay(&mut self, record: Record, now_ms: i64) {
        match record {
            Record::Offset { group, tp, offset } => {
                let group = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms));
                let _ = group.offsets.insert(tp, offset);
            }
            Record::OffsetTombstone { group, tp } => {
                if let Some(group) = self.groups.get_mut(&group) {
                    let _ = group.offsets.remove(&tp);
                }
            }
            Record::Group(snapshot) => {
                let id = snapshot.group.clone();
                let group = self
                    .groups
                    .entry(id.clone())
                    .or_insert_with(|| Group::new(&id, now_ms));
                group.generation = snapshot.generation;
                group.protocol_type = snapshot.protocol_type;
                group.protocol = snapshot.protocol;
                group.leader = snapshot.leader;
                group.members = snapshot
                    .members
                    .into_iter()
                    .map(|m| {
                        let member = Member {
                            id: m.id.clone(),
                            instance_id: m.instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocol_type: group.protocol_type.clone().unwrap_or_default(),
                            protocols: m
                                .protocols
                                .into_iter()
                                .map(|(name, metadata)| (name, Bytes::from(metadata)))
                                .collect(),
                            assignment: Bytes::from(m.assignment),
                            last_seen_ms: now_ms,
                            join_waiter: None,
                            sync_waiter: None,
                        };
                        (m.id, member)
                    })
                    .collect();
                if group.members.is_empty() {
                    group.state = State::Empty;
                    group.state_since_ms = snapshot.state_ms;
                } else {
                    group.state = State::Stable;
                    group.state_since_ms = now_ms;
                }
            }
            Record::GroupTombstone { group } => {
                let _ = self.groups.remove(&group);
            }
        }
    }

    /// Serves every operation but commits (see [`Coordinator::validate_commit`]).
    pub fn handle(&mut self, op: GroupOp, now_ms: i64) -> Handled {
        let ready = Handled::Ready;
        match op {
            GroupOp::Join(req) => match self.join(req, now_ms) {
                Pending::Ready(r) => ready(GroupReply::Join(r)),
                Pending::Wait(rx) => Handled::Wait(GroupWait::Join(rx)),
            },
            GroupOp::Sync(req) => match self.sync(req, now_ms) {
                Pending::Ready(r) => ready(GroupReply::Sync(r)),
                Pending::Wait(rx) => Handled::Wait(GroupWait::Sync(rx)),
            },
            GroupOp::Heartbeat(req) => ready(GroupReply::Heartbeat(self.heartbeat(&req, now_ms))),
            GroupOp::Leave { group_id, members } => {
                ready(GroupReply::Leave(self.leave(&group_id, &members, now_ms)))
            }
            GroupOp::Commit(req) => {
                let result = self.validate_commit(&req, now_ms);
                let result = result.inspect(|per_partition| {
                    self.apply_commit(&req, per_partition, now_ms, true);
                });
                ready(GroupReply::Commit(result))
            }
            GroupOp::FetchOffsets {
                group_id,
                partitions,
            } => ready(GroupReply::FetchOffsets(Ok(
                self.fetch_offsets(&group_id, partitions)
            ))),
            GroupOp::Describe { group_id } => ready(GroupReply::Describe(self.describe(&group_id))),
            GroupOp::Delete { group_id } => ready(GroupReply::Delete(self.delete(&group_id))),
            GroupOp::OffsetDelete {
                group_id,
                partitions,
            } => ready(GroupReply::OffsetDelete(
                self.offset_delete(&group_id, &partitions),
            )),
            GroupOp::List => ready(GroupReply::List(self.list())),
        }
    }

    pub fn join(&mut self, req: JoinRequest, now_ms: i64) -> Pending<JoinResponse> {
        let fail = |error| Pending::Ready(JoinResponse::error(error, &req.member_id));
        if req.group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let session = i64::from(req.session_timeout_ms);
        if session < self.config.session_timeout_min_ms
            || session > self.config.session_timeout_max_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, now_ms));
        if !group.accepts(&req) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if let Some(iid) = req.instance_id.clone() {
                if let Some(old_id) = group.static_owner(&iid).map(str::to_string) {
                    let new_id = format!("{iid}-{}", uuid::Uuid::new_v4());
                    return replace_static(
                        group,
                        &old_id,
                        new_id,
                        &req,
                        now_ms,
                        initial_delay,
                        &mut self.records,
                    );
                }
                let id = format!("{iid}-{}", uuid::Uuid::new_v4());
                return add_and_rebalance(
                    group,
                    id,
                    &req,
                    now_ms,
                    initial_delay,
                    &mut self.records,
                );
            }
            let prefix = if req.client_id.is_empty() {
                "member"
            } else {
                &req.client_id
            };
            let id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if req.require_known_member {
                let _ = group.pending.insert(id.clone(), now_ms + session);
                return Pending::Ready(JoinResponse::error(ResponseError::MemberIdRequired, &id));
            }
            return add_and_rebalance(group, id, &req, now_ms, initial_delay, &mut self.records);
        }
        if group.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return add_and_rebalance(group, id, &req, now_ms, initial_delay, &mut self.records);
        }
        if let Err(error) = group.check_fenced(&req.member_id, req.instance_id.as_deref()) {
            return fail(error);
        }
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let unchanged =
            member.protocols == req.protocols && member.protocol_type == req.protocol_type;
        match group.state {
            State::PreparingRebalance => {
                member.update(&req, now_ms);
                let (tx, rx) = oneshot::channel();
                if let Some(old) = member.join_waiter.replace(tx) {
                    let _ = old.send(JoinResponse::error(
                        ResponseError::RebalanceInProgress,
                        &req.member_id,
                    ));
                }
                maybe_complete(group, now_ms, &mut self.records);
                Pending::Wait(rx)
            }
            State::CompletingRebalance if unchanged => {
                member.last_seen_ms = now_ms;
                let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
                Pending::Ready(group.join_response(&req.member_id, is_leader))
            }
            State::Stable
                if unchanged && group.leader.as_deref() != Some(req.member_id.as_str()) =>
            {
                member.last_seen_ms = now_ms;
                Pending::Ready(group.join_response(&req.member_id, false))
            }
            State::CompletingRebalance | State::Stable => {
                member.update(&req, now_ms);
                let (tx, rx) = oneshot::channel();
                member.join_waiter = Some(tx);
                prepare_rebalance(group, now_ms, initial_delay);
                maybe_complete(group, now_ms, &mut self.records);
                Pending::Wait(rx)
            }
            State::Empty => fail(ResponseError::UnknownMemberId),
        }
    }

    pub fn sync(&mut self, req: SyncRequest, now_ms: i64) -> Pending<SyncResponse> {
        let fail = |error| Pending::Ready(SyncResponse::error(error));
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if let Err(error) = group.check_fenced(&req.member_id, req.instance_id.as_deref()) {
            return fail(error);
        }
        if !group.members.contains_key(&req.member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if req.generation != group.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_mismatch = req
            .protocol
            .as_ref()
            .is_some_and(|p| group.protocol.as_ref() != Some(p));
        if type_mismatch || name_mismatch {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let protocol_type = group.protocol_type.clone();
        let protocol = group.protocol.clone();
        match group.state {
            State::Empty => fail(ResponseError::UnknownMemberId),
            State::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            State::Stable => {
                let member = group
                    .members
                    .get_mut(&req.member_id)
                    .expect("checked above");
                member.last_seen_ms = now_ms;
                Pending::Ready(SyncResponse {
                    error: None,
                    protocol_type,
                    protocol,
                    assignment: member.assignment.clone(),
                })
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                {
                    let member = group
                        .members
                        .get_mut(&req.member_id)
                        .expect("checked above");
                    member.last_seen_ms = now_ms;
                    member.sync_waiter = Some(tx);
                }
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: BTreeMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    for member in group.members.values_mut() {
                        member.assignment =
                            assignments.get(&member.id).cloned().unwrap_or_default();
                    }
                    group.state = State::Stable;
                    group.state_since_ms = now_ms;
                    self.records.push(Record::Group(group.snapshot()));
                    for member in group.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncResponse {
                                error: None,
                                protocol_type: protocol_type.clone(),
                                protocol: protocol.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                }
                Pending::Wait(rx)
            }
        }
    }

    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> GroupResult<()> {
        let group = self
            .groups
            .get_mut(&req.group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        group.check_fenced(&req.member_id, req.instance_id.as_deref())?;
        let state = group.state;
        let generation = group.generation;
        let member = group
            .members
            .get_mut(&req.member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if req.generation != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        member.last_seen_ms = now_ms;
        match state {
            State::Empty => Err(ResponseError::UnknownMemberId),
            State::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            State::CompletingRebalance | State::Stable => Ok(()),
        }
    }

    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[LeaveMember],
        now_ms: i64,
    ) -> GroupResult<Vec<GroupResult<()>>> {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect());
        };
        let mut results = Vec::with_capacity(members.len());
        for leaving in members {
            let target = if leaving.member_id.is_empty() {
                match leaving
                    .instance_id
                    .as_deref()
                    .and_then(|iid| group.static_owner(iid))
                {
                    Some(id) => Ok(Some(id.to_string())),
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else {
                group
                    .check_fenced(&leaving.member_id, leaving.instance_id.as_deref())
                    .and_then(|()| {
                        if group.members.contains_key(&leaving.member_id) {
                            Ok(Some(leaving.member_id.clone()))
                        } else if group.pending.remove(&leaving.member_id).is_some() {
                            Ok(None)
                        } else {
                            Err(ResponseError::UnknownMemberId)
                        }
                    })
            };
            results.push(match target {
                Ok(Some(id)) => {
                    remove_member(group, &id, now_ms, initial_delay, &mut self.records);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            });
        }
        Ok(results)
    }

    /// Checks a commit against the group; per-partition results (metadata size).
    pub fn validate_commit(
        &mut self,
        req: &CommitRequest,
        now_ms: i64,
    ) -> GroupResult<Vec<(Tp, GroupResult<()>)>> {
        let per_partition = req
            .offsets
            .iter()
            .map(|(tp, _, _, metadata)| {
                let too_large = metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes);
                let result = if too_large {
                    Err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    Ok(())
                };
                (tp.clone(), result)
            })
            .collect();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return if req.generation < 0 {
                Ok(per_partition)
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        group.check_fenced(&req.member_id, req.instance_id.as_deref())?;
        if req.generation < 0 && group.state == State::Empty {
            return Ok(per_partition);
        }
        if group.state == State::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        let member = group
            .members
            .get_mut(&req.member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if req.generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        member.last_seen_ms = now_ms;
        Ok(per_partition)
    }

    /// The records of the accepted partitions of a validated commit.
    pub fn commit_records(
        &self,
        req: &CommitRequest,
        per_partition: &[(Tp, GroupResult<()>)],
        now_ms: i64,
    ) -> Vec<Record> {
        accepted(req, per_partition, now_ms)
            .map(|(tp, offset)| Record::Offset {
                group: req.group_id.clone(),
                tp,
                offset,
            })
            .collect()
    }

    /// Applies a validated commit (after its records are durable, or with `record` set to
    /// have them buffered here).
    pub fn apply_commit(
        &mut self,
        req: &CommitRequest,
        per_partition: &[(Tp, GroupResult<()>)],
        now_ms: i64,
        record: bool,
    ) {
        if record {
            let records = self.commit_records(req, per_partition, now_ms);
            self.records.extend(records);
        }
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, now_ms));
        for (tp, offset) in accepted(req, per_partition, now_ms) {
            let _ = group.offsets.insert(tp, offset);
        }
    }

    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<Tp>>,
    ) -> Vec<(Tp, Option<CommittedOffset>)> {
        let offsets = self.groups.get(group_id).map(|g| &g.offsets);
        match partitions {
            Some(partitions) => partitions
                .into_iter()
                .map(|tp| {
                    let committed = offsets.and_then(|o| o.get(&tp)).cloned();
                    (tp, committed)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                .collect(),
        }
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(group) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let protocol = group.protocol.clone().unwrap_or_default();
        let stable = group.state == State::Stable;
        GroupDescription {
            group_id: group.id.clone(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    pub fn list(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect()
    }

    pub fn delete(&mut self, group_id: &str) -> GroupResult<()> {
        let group = self
            .groups
            .get(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        if group.state != State::Empty {
            return Err(ResponseError::NonEmptyGroup);
        }
        for tp in group.offsets.keys() {
            self.records.push(Record::OffsetTombstone {
                group: group_id.to_string(),
                tp: tp.clone(),
            });
        }
        self.records.push(Record::GroupTombstone {
            group: group_id.to_string(),
        });
        let _ = self.groups.remove(group_id);
        Ok(())
    }

    pub fn offset_delete(
        &mut self,
        group_id: &str,
        partitions: &[Tp],
    ) -> GroupResult<Vec<(Tp, GroupResult<()>)>> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let subscribed: std::collections::BTreeSet<String> =
            if group.state != State::Empty && group.protocol_type.as_deref() == Some("consumer") {
                let protocol = group.protocol.clone().unwrap_or_default();
                group
                    .members
                    .values()
                    .flat_map(|m| {
                        let metadata = if protocol.is_empty() {
                            m.protocols
                                .first()
                                .map(|(_, md)| md.clone())
                                .unwrap_or_default()
                        } else {
                            m.metadata_for(&protocol)
                        };
                        crate::subscribed_topics(&metadata)
                    })
                    .collect()
            } else {
                Default::default()
            };
        let mut results = Vec::with_capacity(partitions.len());
        for tp in partitions {
            if subscribed.contains(&tp.topic) {
                results.push((tp.clone(), Err(ResponseError::GroupSubscribedToTopic)));
                continue;
            }
            if group.offsets.remove(tp).is_some() {
                self.records.push(Record::OffsetTombstone {
                    group: group_id.to_string(),
                    tp: tp.clone(),
                });
            }
            results.push((tp.clone(), Ok(())));
        }
        Ok(results)
    }

    /// Drops every group `keep` refuses (their coordination moved to another node): waiting
    /// joins and syncs get NOT_COORDINATOR (the member finds the new coordinator), and their
    /// records not yet taken are discarded (the new coordinator's log is the truth).
    pub fn unload(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<String> = self.groups.keys().filter(|id| !keep(id)).cloned().collect();
        for id in &gone {
            if let Some(mut group) = self.groups.remove(id) {
                for member in group.members.values_mut() {
                    member.fail_waiters(ResponseError::NotCoordinator);
                }
            }
        }
        self.records.retain(|record| keep(record.group()));
        gone.len()
    }

    /// Takes in the groups of `other` (state replayed aside from a log), replacing any of the
    /// same id; `other`'s unpersisted records are dropped (replay makes none).
    pub fn absorb(&mut self, other: Coordinator) {
        debug_assert!(other.records.is_empty(), "replay makes no records");
        self.groups.extend(other.groups);
    }

    /// Session and rebalance timeouts. Call about every 100 ms-1 s.
    pub fn tick(&mut self, now_ms: i64) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        for group in self.groups.values_mut() {
            group.pending.retain(|_, deadline| *deadline > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now_ms - m.last_seen_ms > i64::from(m.session_timeout_ms)
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                remove_member(group, &id, now_ms, initial_delay, &mut self.records);
            }
            maybe_complete(group, now_ms, &mut self.records);
        }
    }

    /// Offset retention and removal of empty groups without offsets (Kafka's offsets cleanup).
    pub fn expire(&mut self, now_ms: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            let standalone = group.protocol_type.is_none();
            let empty = group.state == State::Empty;
            if !empty && !standalone {
                continue;
            }
            let expired: Vec<Tp> = group
                .offsets
                .iter()
                .filter(|(_, o)| {
                    let deadline = o.expire_ms.unwrap_or_else(|| {
                        let base = if standalone {
                            o.commit_ms
                        } else {
                            group.state_since_ms
                        };
                        base.saturating_add(retention)
                    });
                    deadline <= now_ms
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in expired {
                let _ = group.offsets.remove(&tp);
                self.records.push(Record::OffsetTombstone {
                    group: group.id.clone(),
                    tp,
                });
            }
            if empty && group.offsets.is_empty() && group.pending.is_empty() {
                dead.push(group.id.clone());
            }
        }
        for id in dead {
            let _ = self.groups.remove(&id);
            self.records.push(Record::GroupTombstone { group: id });
        }
    }
}

fn accepted<'a>(
    req: &'a CommitRequest,
    per_partition: &'a [(Tp, GroupResult<()>)],
    now_ms: i64,
) -> impl Iterator<Item = (Tp, CommittedOffset)> + 'a {
    req.offsets
        .iter()
        .zip(per_partition)
        .filter(|(_, (_, result))| result.is_ok())
        .map(move |((tp, offset, epoch, metadata), _)| {
            let committed = CommittedOffset {
                offset: *offset,
                leader_epoch: *epoch,
                metadata: metadata.clone(),
                commit_ms: now_ms,
                expire_ms: (req.retention_ms >= 0).then(|| now_ms.saturating_add(req.retention_ms)),
            };
            (tp.clone(), committed)
        })
}

fn new_member(id: String, req: &JoinRequest, now_ms: i64) -> Member {
    Member {
        id,
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocol_type: req.protocol_type.clone(),
        protocols: req.protocols.clone(),
        assignment: Bytes::new(),
        last_seen_ms: now_ms,
        join_waiter: None,
        sync_waiter: None,
    }
}

fn add_and_rebalance(
    group: &mut Group,
    id: String,
    req: &JoinRequest,
    now_ms: i64,
    initial_delay: i64,
    records: &mut Vec<Record>,
) -> Pending<JoinResponse> {
    let mut member = new_member(id.clone(), req, now_ms);
    let (tx, rx) = oneshot::channel();
    member.join_waiter = Some(tx);
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    let _ = group.members.insert(id, member);
    if group.state != State::PreparingRebalance {
        prepare_rebalance(group, now_ms, initial_delay);
    } else {
        extend_deadline(group, now_ms);
    }
    maybe_complete(group, now_ms, records);
    Pending::Wait(rx)
}

fn replace_static(
    group: &mut Group,
    old_id: &str,
    new_id: String,
    req: &JoinRequest,
    now_ms: i64,
    initial_delay: i64,
    records: &mut Vec<Record>,
) -> Pending<JoinResponse> {
    let mut member = group
        .members
        .remove(old_id)
        .expect("static owner is a member");
    member.fail_waiters(ResponseError::FencedInstanceId);
    let unchanged = member.protocols == req.protocols && member.protocol_type == req.protocol_type;
    member.id.clone_from(&new_id);
    member.update(req, now_ms);
    if group.leader.as_deref() == Some(old_id) {
        group.leader = Some(new_id.clone());
    }
    if group.state == State::Stable && unchanged {
        let _ = group.members.insert(new_id.clone(), member);
        records.push(Record::Group(group.snapshot()));
        return Pending::Ready(group.join_response(&new_id, false));
    }
    let (tx, rx) = oneshot::channel();
    member.join_waiter = Some(tx);
    let _ = group.members.insert(new_id, member);
    if group.state != State::PreparingRebalance {
        prepare_rebalance(group, now_ms, initial_delay);
    }
    maybe_complete(group, now_ms, records);
    Pending::Wait(rx)
}

fn remove_member(
    group: &mut Group,
    id: &str,
    now_ms: i64,
    initial_delay: i64,
    records: &mut Vec<Record>,
) {
    let Some(mut member) = group.members.remove(id) else {
        return;
    };
    member.fail_waiters(ResponseError::UnknownMemberId);
    match group.state {
        State::Stable | State::CompletingRebalance => {
            prepare_rebalance(group, now_ms, initial_delay);
            maybe_complete(group, now_ms, records);
        }
        State::PreparingRebalance => maybe_complete(group, now_ms, records),
        State::Empty => {}
    }
}

fn max_rebalance_timeout(group: &Group) -> i64 {
    group
        .members
        .values()
        .map(|m| i64::from(m.rebalance_timeout_ms.max(m.session_timeout_ms)))
        .max()
        .unwrap_or(0)
}

fn extend_deadline(group: &mut Group, now_ms: i64) {
    let deadline = now_ms + max_rebalance_timeout(group);
    group.rebalance_deadline_ms = group.rebalance_deadline_ms.max(deadline);
}

fn prepare_rebalance(group: &mut Group, now_ms: i64, initial_delay: i64) {
    if group.state == State::CompletingRebalance {
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ResponseError::RebalanceInProgress));
            }
        }
    }
    group.initial_deadline_ms = if group.state == State::Empty {
        now_ms + initial_delay
    } else {
        now_ms
    };
    group.state = State::PreparingRebalance;
    group.state_since_ms = now_ms;
    group.rebalance_deadline_ms = now_ms + max_rebalance_timeout(group);
}

fn maybe_complete(group: &mut Group, now_ms: i64, records: &mut Vec<Record>) {
    if group.state != State::PreparingRebalance {
        return;
    }
    let all_joined =
        group.members.values().all(|m| m.join_waiter.is_some()) && group.pending.is_empty();
    let ready = all_joined && now_ms >= group.initial_deadline_ms;
    if ready || now_ms >= group.rebalance_deadline_ms {
        complete_join(group, now_ms, records);
    }
}

fn complete_join(group: &mut Group, now_ms: i64, records: &mut Vec<Record>) {
    // Members that did not rejoin in time are out.
    let late: Vec<String> = group
        .members
        .values()
        .filter(|m| m.join_waiter.is_none())
        .map(|m| m.id.clone())
        .collect();
    for id in late {
        if let Some(mut member) = group.members.remove(&id) {
            member.fail_waiters(ResponseError::UnknownMemberId);
        }
    }
    group.generation += 1;
    group.state_since_ms = now_ms;
    if group.members.is_empty() {
        group.state = State::Empty;
        group.protocol = None;
        group.leader = None;
        records.push(Record::Group(group.snapshot()));
        return;
    }
    group.protocol = group.select_protocol();
    let leader_stays = group
        .leader
        .as_ref()
        .is_some_and(|l| group.members.contains_key(l));
    if !leader_stays {
        group.leader = group.members.keys().next().cloned();
    }
    group.state = State::CompletingRebalance;
    let responses: Vec<(String, JoinResponse)> = group
        .members
        .keys()
        .map(|id| {
            let is_leader = group.leader.as_deref() == Some(id.as_str());
            (id.clone(), group.join_response(id, is_leader))
        })
        .collect();
    for (id, response) in responses {
        if let Some(member) = group.members.get_mut(&id) {
            member.last_seen_ms = now_ms;
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(response);
            }
        }
    }
}
