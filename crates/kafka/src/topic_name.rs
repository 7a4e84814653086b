//! Kafka's rules for topic names (`org.apache.kafka.common.internals.Topic`).

/// Kafka's limit: 249 characters, so that `{topic}-{partition}` directory names fit in 255.
pub const TOPIC_NAME_CHARS_MAX: usize = 249;

/// Names of Kafka's internal topics. Shoal keeps group offsets (and, later, transaction state and
/// cluster metadata) in logs of its own, not in topics, so a user topic of one of these names
/// would be mistaken by tools for the internal one: creating one is refused, as Kafka refuses
/// `__cluster_metadata` ("Creation of internal topic ... is prohibited", INVALID_REQUEST).
pub const INTERNAL_TOPIC_NAMES: [&str; 3] = [
    "__consumer_offsets",
    "__transaction_state",
    "__cluster_metadata",
];

/// `Err(reason)` if `name` is one of Kafka's internal topics, which clients cannot create.
pub fn check_not_internal(name: &str) -> Result<(), String> {
    if INTERNAL_TOPIC_NAMES.contains(&name) {
        return Err(format!("Creation of internal topic {name} is prohibited."));
    }
    Ok(())
}

/// `Err(reason)` if `name` is not a legal topic name.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > TOPIC_NAME_CHARS_MAX {
        return Err(format!(
            "topic name is longer than {TOPIC_NAME_CHARS_MAX} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are legal"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        assert!(validate("orders.v1_eu-west").is_ok());
        assert!(validate("").is_err());
        assert!(validate("..").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate("über").is_err());
        assert!(validate(&"x".repeat(250)).is_err());
        assert!(validate(&"x".repeat(249)).is_ok());
        assert!(check_not_internal("__consumer_offsets").is_err());
        assert!(check_not_internal("__cluster_metadata").is_err());
        assert!(check_not_internal("_consumer_offsets").is_ok());
    }
}
