//! The Kafka topics a stack declares (`[[kafka_topics]]`), planned, applied and removed like the
//! engine's resources: create when missing, unchanged when it has the declared partitions and
//! configs, conflict otherwise (Kafka cannot take partitions away, and labs never alters a topic
//! it finds; Kafka has no tags to tell labs' topics from others, so `labs down` deletes the
//! declared names, and `up` then creates them as declared). Only declared names, under the prefix, are
//! ever created or deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use labs_infra::stack::{self, KafkaTopicSpec};
use labs_infra::{Action, Change, Kind, Removal, Removed};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigResource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::client::{REQUEST_TIMEOUT, config};

pub type Admin = AdminClient<DefaultClientContext>;

pub fn admin(bootstrap: &str) -> Result<Admin> {
    config(bootstrap).create().context("cannot create a Kafka admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).operation_timeout(Some(REQUEST_TIMEOUT))
}

/// A topic as the broker has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub partitions: i32,
    /// Every config the broker reports for it.
    pub config: BTreeMap<String, String>,
}

/// How many partitions `topic` has, or `None` when the broker does not know it.
pub async fn partitions(admin: &Admin, topic: &str) -> Result<Option<i32>> {
    let client = admin.inner();
    let metadata = tokio::task::block_in_place(|| client.fetch_metadata(Some(topic), REQUEST_TIMEOUT))
        .with_context(|| format!("cannot read the metadata of Kafka topic {topic}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match found.error() {
        None => Ok(Some(found.partitions().len() as i32)),
        Some(code) if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition => Ok(None),
        Some(code) => bail!("the broker reports Kafka topic {topic}: {}", RDKafkaErrorCode::from(code)),
    }
}

/// The configs the broker reports for `topic` (`describe_configs`).
pub async fn describe_config(admin: &Admin, topic: &str) -> Result<BTreeMap<String, String>> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options())
        .await
        .with_context(|| format!("cannot describe Kafka topic {topic}"))?;
    let resource: ConfigResource = results
        .into_iter()
        .next()
        .context("the broker answered DescribeConfigs with nothing")?
        .map_err(|code| anyhow::anyhow!("cannot describe Kafka topic {topic}: {code}"))?;
    Ok(resource.entries.into_iter().filter_map(|entry| Some((entry.name, entry.value?))).collect())
}

/// The topic as the broker has it, if it does.
pub async fn existing(admin: &Admin, topic: &str) -> Result<Option<Existing>> {
    let Some(partitions) = partitions(admin, topic).await? else {
        return Ok(None);
    };
    Ok(Some(Existing { partitions, config: describe_config(admin, topic).await? }))
}

/// What `apply` would do to one declared topic, given what the broker has.
pub fn decide(spec: &KafkaTopicSpec, existing: Option<&Existing>) -> Action {
    let Some(existing) = existing else {
        return Action::Create;
    };
    let mut differences = Vec::new();
    if existing.partitions != spec.partitions {
        differences.push(format!("{} partitions, declared {}", existing.partitions, spec.partitions));
    }
    for (key, value) in &spec.config {
        match existing.config.get(key) {
            Some(found) if found == value => {}
            found => differences.push(format!("{key}={}, declared {value}", found.map_or("unset", String::as_str))),
        }
    }
    if differences.is_empty() {
        Action::Unchanged
    } else {
        Action::Conflict(format!("it has {}", differences.join(", ")))
    }
}

fn settings(spec: &KafkaTopicSpec) -> String {
    let noun = if spec.partitions == 1 { "partition" } else { "partitions" };
    let mut words = vec![format!("{} {noun}", spec.partitions)];
    words.extend(spec.config.iter().map(|(k, v)| format!("{k}={v}")));
    words.join(", ")
}

/// The plan rows of a stack's topics under `prefix`.
pub async fn plan(admin: &Admin, prefix: &str, specs: &[KafkaTopicSpec]) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for spec in specs {
        let name = stack::full_name(prefix, &spec.name);
        let existing = existing(admin, &name).await?;
        changes.push(Change {
            kind: Kind::KafkaTopic,
            action: decide(spec, existing.as_ref()),
            settings: settings(spec),
            name,
        });
    }
    Ok(changes)
}

/// Creates the topics `changes` marks for creation, and waits until the broker serves them.
pub async fn apply(admin: &Admin, prefix: &str, specs: &[KafkaTopicSpec], changes: &[Change]) -> Result<()> {
    for spec in specs {
        let name = stack::full_name(prefix, &spec.name);
        if !changes.iter().any(|c| c.kind == Kind::KafkaTopic && c.name == name && c.action == Action::Create) {
            continue;
        }
        create(admin, &name, spec.partitions, &spec.config).await?;
    }
    Ok(())
}

/// Creates `name` with `partitions` and `config`; a topic that exists already is fine.
pub async fn create(admin: &Admin, name: &str, partitions: i32, config: &BTreeMap<String, String>) -> Result<()> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in config {
        topic = topic.set(key, value);
    }
    let results = admin.create_topics([&topic], &options()).await.context("CreateTopics failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create Kafka topic {topic}: {code}"),
        }
    }
    wait_until(admin, name, |found| found == Some(partitions)).await
}

/// Deletes `name` and waits until the broker no longer lists it; returns whether it existed.
pub async fn delete(admin: &Admin, name: &str) -> Result<bool> {
    if partitions(admin, name).await?.is_none() {
        return Ok(false);
    }
    let results = admin.delete_topics(&[name], &options()).await.context("DeleteTopics failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => bail!("cannot delete Kafka topic {topic}: {code}"),
        }
    }
    wait_until(admin, name, |found| found.is_none()).await?;
    Ok(true)
}

/// Polls the metadata until `done` holds for the topic's partition count (creation and deletion
/// are asynchronous in Kafka).
async fn wait_until(admin: &Admin, name: &str, done: impl Fn(Option<i32>) -> bool) -> Result<()> {
    for _ in 0..100 {
        if done(partitions(admin, name).await?) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Kafka topic {name} did not settle within 10 s")
}

/// Removes a stack's topics under `prefix`: every row, going on past a failure.
pub async fn destroy(admin: &Admin, prefix: &str, specs: &[KafkaTopicSpec]) -> Vec<Removed> {
    let mut removed = Vec::new();
    for spec in specs {
        let name = stack::full_name(prefix, &spec.name);
        let removal = match delete(admin, &name).await {
            Ok(true) => Removal::Deleted,
            Ok(false) => Removal::Absent,
            Err(err) => Removal::Failed(format!("{err:#}")),
        };
        removed.push(Removed { kind: Kind::KafkaTopic, name, removal });
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partitions: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
        KafkaTopicSpec {
            name: "t".into(),
            partitions,
            config: config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn found(partitions: i32, config: &[(&str, &str)]) -> Existing {
        Existing { partitions, config: config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    #[test]
    fn a_missing_topic_is_created_and_a_matching_one_left_unchanged() {
        assert_eq!(decide(&spec(4, &[]), None), Action::Create);
        let broker_defaults = [("cleanup.policy", "delete"), ("retention.ms", "604800000")];
        assert_eq!(
            decide(&spec(4, &[("cleanup.policy", "delete")]), Some(&found(4, &broker_defaults))),
            Action::Unchanged
        );
    }

    #[test]
    fn other_partitions_or_configs_are_a_conflict_that_says_what_differs() {
        assert_eq!(
            decide(&spec(4, &[]), Some(&found(2, &[]))),
            Action::Conflict("it has 2 partitions, declared 4".into())
        );
        assert_eq!(
            decide(&spec(1, &[("cleanup.policy", "compact")]), Some(&found(1, &[("cleanup.policy", "delete")]))),
            Action::Conflict("it has cleanup.policy=delete, declared compact".into())
        );
    }
}
