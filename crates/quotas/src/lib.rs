//! Client quotas, free of any runtime: what is set ([`QuotaConfigs`], changed by
//! AlterClientQuotas and kept in the cluster metadata), which quota applies to a client
//! ([`QuotaConfigs::resolve`], Kafka's precedence of user and client-id entities and their
//! defaults), and how usage becomes a throttle time ([`Usage`], a token [`Bucket`] per client
//! and quota kind).
//!
//! Data flow, per request of a client with a quota: the core serving the connection resolves
//! the quota from its metadata snapshot, the core that counts those tags
//! ([`counting_core`]) records the usage and answers the throttle time, and the connection
//! puts it in the response's `throttle_time_ms` and mutes itself that long (KIP-219).

mod bucket;
mod entity;
mod error;
mod usage;

pub use bucket::{Bucket, QuotaWindow};
pub use entity::{
    Filter, Match, MetricTags, Name, QuotaConfigs, QuotaEntity, QuotaEntry, QuotaKind, QuotaOp,
    Resolved, CLIENT_ID, ENTITIES_MAX, ENTITY_NAME_BYTES_MAX, IP, USER,
};
pub use error::{Error, Result};
pub use usage::{counting_core, Throttle, Usage, SENSOR_IDLE_MS_MAX};

/// The principal of every connection: this broker has no authentication yet, so every client
/// is Kafka's unauthenticated `User:ANONYMOUS`, and user quotas name it (or the default).
pub const ANONYMOUS_USER: &str = "ANONYMOUS";
