//! Quota entities, the configs set on them, Kafka's precedence between them, and the
//! DescribeClientQuotas filter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest user or client id a quota entity may name (Kafka's client ids are short strings;
/// this keeps one AlterClientQuotas from filling the metadata).
pub const ENTITY_NAME_BYTES_MAX: usize = 255;

/// Most entities with quotas on one cluster: the whole set lives in every core's metadata.
pub const ENTITIES_MAX: usize = 10_000;

/// The entity types of a quota entity, as the protocol names them.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// One side of an entity: a named user or client id, or the default for all of them
/// (the protocol's null name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Name {
    Default,
    Named(String),
}

impl Name {
    pub fn from_protocol(name: Option<&str>) -> Result<Name> {
        match name {
            None => Ok(Name::Default),
            Some(name) if name.len() > ENTITY_NAME_BYTES_MAX => Err(Error::Invalid(format!(
                "entity name of {} bytes, at most {ENTITY_NAME_BYTES_MAX}",
                name.len()
            ))),
            Some(name) => Ok(Name::Named(name.to_string())),
        }
    }

    /// The protocol's form: `None` for the default.
    pub fn as_protocol(&self) -> Option<&str> {
        match self {
            Name::Default => None,
            Name::Named(name) => Some(name),
        }
    }
}

/// What a quota is set on: a user, a client id, or both (at least one). Kafka's
/// `/config/users/<user>/clients/<client-id>` and its defaults.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
}

impl QuotaEntity {
    /// From the protocol's (entity type, name) components. IP entities are refused: they
    /// carry only `connection_creation_rate`, which this broker does not enforce.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        for (entity_type, name) in components {
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => {
                    return Err(Error::Unsupported(
                        "ip quota entities (connection_creation_rate) are not supported".into(),
                    ))
                }
                other => return Err(Error::Invalid(format!("unknown entity type '{other}'"))),
            };
            if slot.is_some() {
                return Err(Error::Invalid(format!(
                    "entity type '{entity_type}' given twice"
                )));
            }
            *slot = Some(Name::from_protocol(name)?);
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(Error::Invalid(
                "an entity needs a user or a client-id".into(),
            ));
        }
        Ok(entity)
    }

    /// The protocol's components, user first.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut components = Vec::with_capacity(2);
        if let Some(user) = &self.user {
            components.push((USER, user.as_protocol()));
        }
        if let Some(client_id) = &self.client_id {
            components.push((CLIENT_ID, client_id.as_protocol()));
        }
        components
    }
}

/// The quotas this broker enforces, by their config keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaKind {
    /// `producer_byte_rate`: Produce request bytes per second.
    ProduceBytes,
    /// `consumer_byte_rate`: Fetch response bytes per second.
    FetchBytes,
    /// `request_percentage`: the share of one core's time spent on the client's requests, in
    /// percent (Kafka counts request handler and network threads; a core does both here).
    RequestPercentage,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 3] = [
        QuotaKind::ProduceBytes,
        QuotaKind::FetchBytes,
        QuotaKind::RequestPercentage,
    ];

    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::ProduceBytes => "producer_byte_rate",
            QuotaKind::FetchBytes => "consumer_byte_rate",
            QuotaKind::RequestPercentage => "request_percentage",
        }
    }

    pub fn from_key(key: &str) -> Result<QuotaKind> {
        match key {
            "producer_byte_rate" => Ok(QuotaKind::ProduceBytes),
            "consumer_byte_rate" => Ok(QuotaKind::FetchBytes),
            "request_percentage" => Ok(QuotaKind::RequestPercentage),
            "controller_mutation_rate" => Err(Error::Unsupported(
                "controller_mutation_rate is not supported by this broker".into(),
            )),
            other => Err(Error::Invalid(format!("unknown quota key '{other}'"))),
        }
    }

    /// Kafka's types: the byte rates are longs, the percentage a double. Zero, negative and
    /// non-finite bounds are refused (a zero rate would mute a client for ever).
    pub fn validate(self, value: f64) -> Result<()> {
        if !value.is_finite() || value <= 0.0 {
            return Err(Error::Invalid(format!(
                "{} must be a positive number, not {value}",
                self.key()
            )));
        }
        let whole = matches!(self, QuotaKind::ProduceBytes | QuotaKind::FetchBytes);
        if whole && (value.fract() != 0.0 || value > i64::MAX as f64) {
            return Err(Error::Invalid(format!(
                "{} must be a whole number of bytes, not {value}",
                self.key()
            )));
        }
        Ok(())
    }
}

/// One change of an AlterClientQuotas entry: set a quota, or remove it (`None`).
pub type QuotaOp = (QuotaKind, Option<f64>);

// Quota values are finite: `QuotaKind::validate` refuses NaN before a value is stored, and
// JSON (metadata files, controller records) cannot carry one, so equality is total.
impl Eq for QuotaConfigs {}
impl Eq for QuotaEntry {}

/// The quotas set on every entity. Serialised as a list, since JSON object keys are strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<QuotaEntry>", into = "Vec<QuotaEntry>")]
pub struct QuotaConfigs {
    entities: BTreeMap<QuotaEntity, BTreeMap<QuotaKind, f64>>,
}

/// One entity with its quotas, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaEntry {
    pub entity: QuotaEntity,
    pub values: BTreeMap<QuotaKind, f64>,
}

impl From<Vec<QuotaEntry>> for QuotaConfigs {
    fn from(entries: Vec<QuotaEntry>) -> QuotaConfigs {
        QuotaConfigs {
            entities: entries
                .into_iter()
                .filter(|entry| !entry.values.is_empty())
                .map(|entry| (entry.entity, entry.values))
                .collect(),
        }
    }
}

impl From<QuotaConfigs> for Vec<QuotaEntry> {
    fn from(configs: QuotaConfigs) -> Vec<QuotaEntry> {
        configs
            .entities
            .into_iter()
            .map(|(entity, values)| QuotaEntry { entity, values })
            .collect()
    }
}

impl QuotaConfigs {
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<QuotaKind, f64>> {
        self.entities.get(entity)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<QuotaKind, f64>)> {
        self.entities.iter()
    }

    /// Checks `ops` as a whole (each kind at most once, every value valid) without applying
    /// them: AlterClientQuotas answers each entry alone, and `validate_only` stops here.
    pub fn check(&self, entity: &QuotaEntity, ops: &[QuotaOp]) -> Result<()> {
        for (index, (kind, value)) in ops.iter().enumerate() {
            if ops[..index].iter().any(|(other, _)| other == kind) {
                return Err(Error::Invalid(format!("{} given twice", kind.key())));
            }
            if let Some(value) = value {
                kind.validate(*value)?;
            }
        }
        let adds = ops.iter().any(|(_, value)| value.is_some());
        if adds && !self.entities.contains_key(entity) && self.entities.len() >= ENTITIES_MAX {
            return Err(Error::Limit(format!(
                "{ENTITIES_MAX} entities already have quotas"
            )));
        }
        Ok(())
    }

    /// Applies checked `ops`; an entity left without quotas is removed.
    pub fn apply(&mut self, entity: &QuotaEntity, ops: &[QuotaOp]) -> Result<()> {
        self.check(entity, ops)?;
        let values = self.entities.entry(entity.clone()).or_default();
        for &(kind, value) in ops {
            match value {
                Some(value) => {
                    let _ = values.insert(kind, value);
                }
                None => {
                    let _ = values.remove(&kind);
                }
            }
        }
        if values.is_empty() {
            let _ = self.entities.remove(entity);
        }
        Ok(())
    }

    /// The quota of `kind` that applies to a client, with the metric tags its usage is
    /// counted under, by Kafka's precedence (most specific first):
    /// `<user, client-id>`, `<user, default client-id>`, `<user>`, `<default user, client-id>`,
    /// `<default user, default client-id>`, `<default user>`, `<client-id>`,
    /// `<default client-id>`. The tags name the client's actual user and/or client id on the
    /// levels the matched entity has: clients matched by a default each get their own quota,
    /// clients matched by `<user>` share one.
    pub fn resolve(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<Resolved> {
        if self.entities.is_empty() {
            return None;
        }
        let named = |s: &str| Name::Named(s.to_string());
        let levels = [
            (Some(named(user)), Some(named(client_id))),
            (Some(named(user)), Some(Name::Default)),
            (Some(named(user)), None),
            (Some(Name::Default), Some(named(client_id))),
            (Some(Name::Default), Some(Name::Default)),
            (Some(Name::Default), None),
            (None, Some(named(client_id))),
            (None, Some(Name::Default)),
        ];
        levels.into_iter().find_map(|(u, c)| {
            let tags = MetricTags {
                user: u.as_ref().map(|_| user.to_string()),
                client_id: c.as_ref().map(|_| client_id.to_string()),
            };
            let entity = QuotaEntity {
                user: u,
                client_id: c,
            };
            let bound = *self.entities.get(&entity)?.get(&kind)?;
            Some(Resolved { bound, tags })
        })
    }
}

/// Whose usage a quota counts: the user and/or client id of the matched entity's levels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricTags {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

/// A quota that applies to a client: its bound and where its usage is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub bound: f64,
    pub tags: MetricTags,
}

/// How a DescribeClientQuotas component matches an entity's name of its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Protocol match type 0: this name.
    Exact(String),
    /// 1: the default.
    Default,
    /// 2: any name of this type, the default included.
    Any,
}

/// A DescribeClientQuotas filter: every component must match, and with `strict` the entity
/// has no other entity types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub user: Option<Match>,
    pub client_id: Option<Match>,
    pub strict: bool,
}

impl Filter {
    /// From the protocol's (entity type, match type, match) components.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
        strict: bool,
    ) -> Result<Filter> {
        let mut filter = Filter {
            user: None,
            client_id: None,
            strict,
        };
        for (entity_type, match_type, name) in components {
            let slot = match entity_type {
                USER => &mut filter.user,
                CLIENT_ID => &mut filter.client_id,
                IP => {
                    return Err(Error::Unsupported(
                        "ip quota entities are not supported".into(),
                    ))
                }
                other => return Err(Error::Invalid(format!("unknown entity type '{other}'"))),
            };
            if slot.is_some() {
                return Err(Error::Invalid(format!(
                    "entity type '{entity_type}' filtered twice"
                )));
            }
            *slot = Some(match (match_type, name) {
                (0, Some(name)) => Match::Exact(name.to_string()),
                (0, None) => {
                    return Err(Error::Invalid(
                        "an exact match (match type 0) needs a name".into(),
                    ))
                }
                (1, None) => Match::Default,
                (2, None) => Match::Any,
                (1 | 2, Some(_)) => {
                    return Err(Error::Invalid(format!(
                        "match type {match_type} takes no name"
                    )))
                }
                (other, _) => return Err(Error::Invalid(format!("unknown match type {other}"))),
            });
        }
        Ok(filter)
    }

    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        fn side(filter: &Option<Match>, name: &Option<Name>, strict: bool) -> bool {
            match (filter, name) {
                (None, None) => true,
                (None, Some(_)) => !strict,
                (Some(_), None) => false,
                (Some(Match::Any), Some(_)) => true,
                (Some(Match::Default), Some(name)) => *name == Name::Default,
                (Some(Match::Exact(want)), Some(Name::Named(name))) => want == name,
                (Some(Match::Exact(_)), Some(Name::Default)) => false,
            }
        }
        side(&self.user, &entity.user, self.strict)
            && side(&self.client_id, &entity.client_id, self.strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        let name = |n: Option<&str>| n.map_or(Name::Default, |n| Name::Named(n.to_string()));
        QuotaEntity {
            user: user.map(name),
            client_id: client.map(name),
        }
    }

    fn set(configs: &mut QuotaConfigs, e: QuotaEntity, kind: QuotaKind, value: f64) {
        configs.apply(&e, &[(kind, Some(value))]).expect("valid");
    }

    #[test]
    fn precedence_goes_from_the_most_specific_entity_to_the_client_default() {
        let p = QuotaKind::ProduceBytes;
        let mut configs = QuotaConfigs::default();
        let levels = [
            entity(None, Some(None)),
            entity(None, Some(Some("c"))),
            entity(Some(None), None),
            entity(Some(None), Some(None)),
            entity(Some(None), Some(Some("c"))),
            entity(Some(Some("u")), None),
            entity(Some(Some("u")), Some(None)),
            entity(Some(Some("u")), Some(Some("c"))),
        ];
        for (rank, level) in levels.iter().enumerate() {
            set(&mut configs, level.clone(), p, (rank + 1) as f64);
            let resolved = configs.resolve(p, "u", "c").expect("a quota applies");
            assert_eq!(resolved.bound, (rank + 1) as f64, "level {level:?}");
            assert_eq!(
                resolved.tags.user.is_some(),
                level.user.is_some(),
                "{level:?}"
            );
            assert_eq!(resolved.tags.client_id.is_some(), level.client_id.is_some());
        }
        // Another user falls through to the default user with the client id.
        let other = configs.resolve(p, "v", "c").expect("default user");
        assert_eq!(other.bound, 5.0);
        assert_eq!(
            other.tags,
            MetricTags {
                user: Some("v".into()),
                client_id: Some("c".into())
            }
        );
        // Each kind resolves on its own: nothing set for fetch.
        assert!(configs.resolve(QuotaKind::FetchBytes, "u", "c").is_none());
    }

    #[test]
    fn removing_the_last_quota_removes_the_entity() {
        let mut configs = QuotaConfigs::default();
        let e = entity(None, Some(Some("c")));
        set(&mut configs, e.clone(), QuotaKind::ProduceBytes, 1024.0);
        set(&mut configs, e.clone(), QuotaKind::FetchBytes, 2048.0);
        configs
            .apply(&e, &[(QuotaKind::ProduceBytes, None)])
            .expect("remove");
        assert_eq!(configs.len(), 1);
        configs
            .apply(&e, &[(QuotaKind::FetchBytes, None)])
            .expect("remove");
        assert!(configs.is_empty());
        // Removing what is not there is fine (Kafka answers NONE).
        configs
            .apply(&e, &[(QuotaKind::FetchBytes, None)])
            .expect("remove again");
        assert!(configs.is_empty());
    }

    #[test]
    fn bad_values_and_entities_are_refused() {
        let configs = QuotaConfigs::default();
        let e = entity(None, Some(Some("c")));
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(configs
                .check(&e, &[(QuotaKind::ProduceBytes, Some(bad))])
                .is_err());
        }
        assert!(configs
            .check(&e, &[(QuotaKind::RequestPercentage, Some(12.5))])
            .is_ok());
        let twice = [
            (QuotaKind::FetchBytes, Some(1.0)),
            (QuotaKind::FetchBytes, None),
        ];
        assert!(configs.check(&e, &twice).is_err());
        assert!(QuotaEntity::from_components([("ip", Some("1.2.3.4"))]).is_err());
        assert!(QuotaEntity::from_components([("user", None), ("user", Some("x"))]).is_err());
        assert!(QuotaEntity::from_components([("topic", Some("x"))]).is_err());
        assert!(QuotaEntity::from_components(std::iter::empty()).is_err());
        assert!(QuotaKind::from_key("controller_mutation_rate").is_err());
    }

    #[test]
    fn filters_match_like_kafka() {
        let both = entity(Some(Some("u")), Some(Some("c")));
        let user = entity(Some(Some("u")), None);
        let default_client = entity(None, Some(None));
        let f = |components: Vec<(&str, i8, Option<&str>)>, strict| {
            Filter::from_components(components, strict).expect("valid filter")
        };
        let any_user = f(vec![("user", 2, None)], false);
        assert!(any_user.matches(&both) && any_user.matches(&user));
        assert!(!any_user.matches(&default_client));
        let only_user = f(vec![("user", 0, Some("u"))], true);
        assert!(only_user.matches(&user) && !only_user.matches(&both));
        let default = f(vec![("client-id", 1, None)], false);
        assert!(default.matches(&default_client) && !default.matches(&both));
        let all = f(vec![], false);
        assert!(all.matches(&both) && all.matches(&user) && all.matches(&default_client));
        assert!(Filter::from_components([("user", 0, None)], false).is_err());
        assert!(Filter::from_components([("user", 3, None)], false).is_err());
    }

    #[test]
    fn configs_round_trip_through_json() {
        let mut configs = QuotaConfigs::default();
        set(
            &mut configs,
            entity(Some(None), Some(Some("c"))),
            QuotaKind::RequestPercentage,
            25.0,
        );
        set(
            &mut configs,
            entity(None, Some(None)),
            QuotaKind::FetchBytes,
            4096.0,
        );
        let json = serde_json::to_string(&configs).expect("encode");
        let back: QuotaConfigs = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, configs);
    }
}
