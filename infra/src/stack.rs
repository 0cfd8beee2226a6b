//! The declarations in `infra/stacks/*.toml`: what one example provisions, as data.
//!
//! Names in a declaration are suffixes; the engine puts `<prefix>-` in front, so several learners
//! (or tests) can share one endpoint. Strings may use `${prefix}`, `${region}`, `${account}` and
//! `${partition}`, filled in by [`Vars::expand`].

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub example: String,
    #[serde(default)]
    pub kinesis_streams: Vec<KinesisStream>,
    #[serde(default)]
    pub dynamodb_tables: Vec<DynamoTable>,
    #[serde(default)]
    pub sns_topics: Vec<SnsTopic>,
    #[serde(default)]
    pub sqs_queues: Vec<SqsQueue>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub functions: Vec<Function>,
    #[serde(default)]
    pub event_source_mappings: Vec<EventSourceMapping>,
    /// Topics on the Kafka broker (the Kafka track). The engine does not read them: infra holds
    /// no Kafka client, and the CLI applies and removes them beside the AWS resources.
    #[serde(default)]
    pub kafka_topics: Vec<KafkaTopicSpec>,
}

/// A Kafka topic: its partitions and the topic configs it is created with (`cleanup.policy`,
/// `retention.ms`, ...). One replica: labs' broker is a single node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicSpec {
    pub name: String,
    pub partitions: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl KafkaTopicSpec {
    /// A declaration Kafka would refuse, refused at load instead.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.partitions) {
            return Err(format!("Kafka topic {}: partitions must be 1 to 1000, not {}", self.name, self.partitions));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisStream {
    pub name: String,
    pub shards: i32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamoTable {
    pub name: String,
    pub partition_key: KeyAttribute,
    pub sort_key: Option<KeyAttribute>,
    /// `NEW_AND_OLD_IMAGES` and friends; absent means no stream.
    pub stream_view_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyAttribute {
    pub name: String,
    /// `S`, `N` or `B`.
    #[serde(rename = "type")]
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnsTopic {
    pub name: String,
}

/// A standard SQS queue.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqsQueue {
    pub name: String,
    /// How long a received message stays hidden from other consumers before it is redelivered.
    pub visibility_timeout_seconds: i32,
    /// Where messages go after too many receives (the queue's RedrivePolicy).
    pub dead_letter: Option<DeadLetter>,
    /// Topics allowed to send to it (its queue policy); empty means no policy.
    #[serde(default)]
    pub allow_topics: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub queue: String,
    pub max_receive_count: i32,
}

/// An SNS subscription delivering a topic to an SQS queue.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub topic: String,
    pub queue: String,
    /// Deliver the published message as is, instead of wrapped in SNS's JSON envelope.
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// An SNS filter policy on message attributes; absent means every message.
    pub filter_policy: Option<serde_json::Value>,
}

/// An execution role for Lambda functions: trust in `lambda.amazonaws.com`, permission to write
/// its own logs, and the inline statements listed here, nothing more.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub name: String,
    /// The cargo package under `lambdas/` whose binary is the function's `bootstrap`.
    pub package: String,
    pub role: String,
    pub timeout_seconds: i32,
    pub memory_mb: i32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

impl Function {
    /// The environment `labs up` gives the function (without the code hash): the declared
    /// variables with their placeholders filled in, and `LABS_EXAMPLE`.
    pub fn deployed_environment(&self, vars: &Vars, example: &str) -> BTreeMap<String, String> {
        let mut variables: BTreeMap<String, String> =
            self.environment.iter().map(|(k, v)| (k.clone(), vars.expand(v))).collect();
        variables.insert(EXAMPLE_VAR.to_owned(), example.to_owned());
        variables
    }
}

/// The environment variable that tells a function which example deployed it.
pub const EXAMPLE_VAR: &str = "LABS_EXAMPLE";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSourceMapping {
    pub function: String,
    pub source: MappingSource,
    /// Streams only: `TRIM_HORIZON`, `LATEST` or (Kinesis only) `AT_TIMESTAMP`. Queues have no
    /// position.
    pub starting_position: Option<String>,
    /// With `AT_TIMESTAMP` only: Unix time in seconds (`StartingPositionTimestamp`); reading
    /// starts at the first record that arrived at or after it.
    pub starting_position_timestamp: Option<f64>,
    pub batch_size: i32,
    #[serde(default)]
    pub maximum_batching_window_seconds: i32,
    pub maximum_retry_attempts: Option<i32>,
    #[serde(default)]
    pub bisect_batch_on_function_error: bool,
    #[serde(default)]
    pub report_batch_item_failures: bool,
    /// Streams only: how many batches of one shard are processed at once (1 to 10).
    pub parallelization_factor: Option<i32>,
    /// Streams only: records older than this are skipped (-1, or 60 to 604800).
    pub maximum_record_age_seconds: Option<i32>,
    /// Streams only: where a batch that used up its retries is recorded.
    pub on_failure: Option<FailureDestination>,
    /// Streams only: a tumbling window of this many seconds (1 to 900) whose state the function keeps.
    pub tumbling_window_seconds: Option<i32>,
    /// `FilterCriteria`: up to 5 AWS filter patterns (JSON objects, as text), OR-ed; a record
    /// matching none is never delivered (on a stream, it is checkpointed past). Empty: no filter.
    #[serde(default)]
    pub filter_criteria: Vec<String>,
    /// A disabled mapping exists, tagged, but Lambda does not poll it (labs' own runner may).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Streams only: on an emulator, labs' stream-trigger runner executes this mapping (with
    /// AWS's retry, bisect and on-failure semantics) instead of the emulator's own poller. A
    /// mapping with a tumbling window, filter patterns or `AT_TIMESTAMP` goes to the runner there
    /// without it (emulators lack those). AWS ignores it. The engine does not read it.
    #[serde(default)]
    pub runner: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// An on-failure destination of a stream mapping: a queue or topic of the same stack.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FailureDestination {
    SqsQueue(String),
    SnsTopic(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MappingSource {
    KinesisStream(String),
    DynamodbTableStream(String),
    SqsQueue(String),
}

/// The values `${...}` placeholders stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub prefix: String,
    pub region: String,
    pub account: String,
    pub partition: String,
}

impl Vars {
    /// The full name of a declared resource.
    pub fn name(&self, suffix: &str) -> String {
        full_name(&self.prefix, suffix)
    }

    pub fn expand(&self, text: &str) -> String {
        text.replace("${prefix}", &self.prefix)
            .replace("${region}", &self.region)
            .replace("${account}", &self.account)
            .replace("${partition}", &self.partition)
    }
}

// `SOURCES`: every `infra/stacks/*.toml`, found by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/stacks.rs"));

/// The full name of a declared resource: `<prefix>-<logical name>`. The one place a name is
/// put together, for the engine and for the code that uses the resources.
pub fn full_name(prefix: &str, logical: &str) -> String {
    format!("{prefix}-{logical}")
}

/// The kinds of resource code refers to by handle, each with the names a stack declares of it.
pub trait HandleKind {
    /// How an error or a test names the kind.
    const KIND: &'static str;
    fn declared(stack: &Stack) -> Vec<&str>;
}

macro_rules! handle_kinds {
    ($($(#[$doc:meta])* $kind:ident = $what:literal: |$stack:ident| $names:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $kind;

        impl HandleKind for $kind {
            const KIND: &'static str = $what;
            fn declared($stack: &Stack) -> Vec<&str> {
                $names
            }
        }
    )*};
}

handle_kinds! {
    /// A Kinesis stream.
    StreamKind = "Kinesis stream": |stack| stack.kinesis_streams.iter().map(|s| s.name.as_str()).collect();
    /// A DynamoDB table.
    TableKind = "DynamoDB table": |stack| stack.dynamodb_tables.iter().map(|t| t.name.as_str()).collect();
    /// An SNS topic.
    TopicKind = "SNS topic": |stack| stack.sns_topics.iter().map(|t| t.name.as_str()).collect();
    /// An SQS queue.
    QueueKind = "SQS queue": |stack| stack.sqs_queues.iter().map(|q| q.name.as_str()).collect();
    /// A Lambda function.
    FunctionKind = "Lambda function": |stack| stack.functions.iter().map(|f| f.name.as_str()).collect();
    /// A Kafka topic.
    KafkaTopicKind = "Kafka topic": |stack| stack.kafka_topics.iter().map(|t| t.name.as_str()).collect();
}

/// A typed reference to a resource a stack declares, by its logical name (the `name` in the
/// stack file). Code turns it into the full name with [`Handle::full_name`]; a test checks with
/// [`Stack::check`] that the stack declares it, with this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle<K> {
    logical: &'static str,
    kind: std::marker::PhantomData<K>,
}

impl<K: HandleKind> Handle<K> {
    pub const fn new(logical: &'static str) -> Self {
        Self { logical, kind: std::marker::PhantomData }
    }

    pub fn logical(&self) -> &'static str {
        self.logical
    }

    pub fn full_name(&self, prefix: &str) -> String {
        full_name(prefix, self.logical)
    }

    /// The same reference without its kind in the type, for lists of what an example uses.
    pub const fn any(self) -> AnyHandle {
        AnyHandle { logical: self.logical, kind: K::KIND, declared: K::declared }
    }
}

pub type Stream = Handle<StreamKind>;
pub type Table = Handle<TableKind>;
pub type Topic = Handle<TopicKind>;
pub type Queue = Handle<QueueKind>;
pub type Lambda = Handle<FunctionKind>;
pub type KafkaTopic = Handle<KafkaTopicKind>;

/// A handle of any kind, as examples list the resources they use.
#[derive(Clone, Copy)]
pub struct AnyHandle {
    logical: &'static str,
    kind: &'static str,
    declared: fn(&Stack) -> Vec<&str>,
}

impl std::fmt::Debug for AnyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.logical)
    }
}

impl Stack {
    /// Whether this stack declares `handle`'s resource, as that kind; the error says which
    /// handle is missing.
    pub fn check(&self, handle: &AnyHandle) -> Result<(), String> {
        if (handle.declared)(self).contains(&handle.logical) {
            Ok(())
        } else {
            Err(format!("{} declares no {} named {}", self.example, handle.kind, handle.logical))
        }
    }
}

/// Up to 5 filters per mapping: AWS's default quota.
pub const MAX_FILTERS: usize = 5;

impl Stack {
    /// The mapping settings AWS checks at `CreateEventSourceMapping`, checked when the
    /// declaration is loaded, so a mistake is one line before anything is created. (The filter
    /// patterns' own syntax is checked where they are matched, by the runner's parser.)
    pub fn check_mappings(&self) -> Result<(), String> {
        for mapping in &self.event_source_mappings {
            let source = match &mapping.source {
                MappingSource::KinesisStream(s)
                | MappingSource::DynamodbTableStream(s)
                | MappingSource::SqsQueue(s) => s,
            };
            mapping.check().map_err(|e| format!("the mapping {source} -> {}: {e}", mapping.function))?;
        }
        Ok(())
    }
}

impl EventSourceMapping {
    /// Whether it reads a Kinesis or DynamoDB stream. Streams have positions, retry limits and
    /// bisection; queues have none of these (SQS retries through the queue's visibility timeout
    /// and redrive policy), and AWS refuses them there.
    pub fn reads_a_stream(&self) -> bool {
        !matches!(self.source, MappingSource::SqsQueue(_))
    }

    /// Its settings within the ranges AWS accepts, and only where AWS takes them.
    pub fn check(&self) -> Result<(), String> {
        let from_stream = self.reads_a_stream();
        let in_range = |value: Option<i32>, range: std::ops::RangeInclusive<i32>, what: &str| match value {
            Some(_) if !from_stream => Err(format!("{what} applies to stream mappings only")),
            Some(v) if !range.contains(&v) => Err(format!("{what} {v} is outside {range:?}")),
            _ => Ok(()),
        };
        in_range(self.parallelization_factor, 1..=10, "parallelization factor")?;
        if self.maximum_record_age_seconds != Some(-1) {
            in_range(self.maximum_record_age_seconds, 60..=604_800, "maximum record age")?;
        }
        in_range(self.tumbling_window_seconds, 1..=900, "tumbling window")?;
        if self.on_failure.is_some() && !from_stream {
            return Err("on-failure destinations apply to stream mappings only".to_owned());
        }
        self.check_starting_position(from_stream)?;
        self.check_filters()
    }

    fn check_starting_position(&self, from_stream: bool) -> Result<(), String> {
        match (self.starting_position.as_deref(), self.starting_position_timestamp) {
            (Some(_), _) if !from_stream => Err("queues have no starting position".to_owned()),
            (None, None) if from_stream => Err("a stream mapping needs a starting_position".to_owned()),
            (Some("AT_TIMESTAMP"), _) if matches!(self.source, MappingSource::DynamodbTableStream(_)) => {
                Err("AT_TIMESTAMP is for Kinesis streams only: DynamoDB streams reject it, as AWS does \
                     (Unsupported starting position for arn type)"
                    .to_owned())
            }
            (Some("AT_TIMESTAMP"), Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => Ok(()),
            (Some("AT_TIMESTAMP"), _) => {
                Err("AT_TIMESTAMP needs starting_position_timestamp, a Unix time in seconds".to_owned())
            }
            (Some("TRIM_HORIZON" | "LATEST") | None, Some(_)) => {
                Err("starting_position_timestamp goes with starting_position = \"AT_TIMESTAMP\" only".to_owned())
            }
            (Some("TRIM_HORIZON" | "LATEST") | None, None) => Ok(()),
            (Some(other), _) => {
                Err(format!("starting position {other:?} is not one of TRIM_HORIZON, LATEST, AT_TIMESTAMP"))
            }
        }
    }

    fn check_filters(&self) -> Result<(), String> {
        if self.filter_criteria.len() > MAX_FILTERS {
            return Err(format!("{} filters: at most {MAX_FILTERS} are allowed", self.filter_criteria.len()));
        }
        for pattern in &self.filter_criteria {
            match serde_json::from_str::<serde_json::Value>(pattern) {
                Ok(serde_json::Value::Object(_)) => {}
                _ => return Err(format!("the filter pattern {pattern} is not a JSON object")),
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0} provisions nothing yet: its lab has not been built")]
    NotDeclared(String),
    #[error("infra/stacks/{0}.toml is not a valid declaration: {1}")]
    Invalid(String, String),
}

/// The declaration for `example` (`example-1`, ..., or `probe`).
pub fn load(example: &str) -> Result<Stack, StackError> {
    let (_, source) =
        SOURCES.iter().find(|(name, _)| *name == example).ok_or_else(|| StackError::NotDeclared(example.to_owned()))?;
    parse(example, source)
}

/// A declaration's text, read and checked.
fn parse(example: &str, source: &str) -> Result<Stack, StackError> {
    let stack: Stack =
        toml::from_str(source).map_err(|e| StackError::Invalid(example.to_owned(), e.message().to_owned()))?;
    if stack.example != example {
        return Err(StackError::Invalid(example.to_owned(), format!("it names itself {}", stack.example)));
    }
    stack.check_mappings().map_err(|e| StackError::Invalid(example.to_owned(), e))?;
    for topic in &stack.kafka_topics {
        topic.check().map_err(|e| StackError::Invalid(example.to_owned(), e))?;
    }
    Ok(stack)
}

/// The names of every declared stack.
pub fn declared() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_parses_and_is_consistent() {
        for name in declared() {
            let stack = load(name).unwrap_or_else(|e| panic!("{e}"));
            for function in &stack.functions {
                assert!(stack.roles.iter().any(|r| r.name == function.role), "{name}: role of {}", function.name);
            }
            for mapping in &stack.event_source_mappings {
                assert!(stack.functions.iter().any(|f| f.name == mapping.function), "{name}: {}", mapping.function);
                match &mapping.source {
                    MappingSource::KinesisStream(s) => assert!(stack.kinesis_streams.iter().any(|k| &k.name == s)),
                    MappingSource::DynamodbTableStream(t) => {
                        assert!(stack.dynamodb_tables.iter().any(|d| &d.name == t && d.stream_view_type.is_some()))
                    }
                    MappingSource::SqsQueue(q) => assert!(stack.sqs_queues.iter().any(|d| &d.name == q)),
                }
                match &mapping.on_failure {
                    Some(FailureDestination::SqsQueue(q)) => assert!(stack.sqs_queues.iter().any(|d| &d.name == q)),
                    Some(FailureDestination::SnsTopic(t)) => assert!(stack.sns_topics.iter().any(|d| &d.name == t)),
                    None => {}
                }
            }
            let queue = |q: &str| stack.sqs_queues.iter().any(|d| d.name == q);
            let topic = |t: &str| stack.sns_topics.iter().any(|d| d.name == t);
            for declared in &stack.sqs_queues {
                if let Some(dead_letter) = &declared.dead_letter {
                    assert!(queue(&dead_letter.queue), "{name}: dead-letter queue of {}", declared.name);
                }
                assert!(declared.allow_topics.iter().all(|t| topic(t)), "{name}: senders of {}", declared.name);
            }
            for subscription in &stack.subscriptions {
                assert!(topic(&subscription.topic) && queue(&subscription.queue), "{name}: {subscription:?}");
                assert!(subscription.filter_policy.as_ref().is_none_or(serde_json::Value::is_object));
            }
        }
    }

    /// The permissions AWS documents for a mapping's execution role ("Lambda execution role
    /// permissions" of each event source; `kinesis:SubscribeToShard` only for enhanced fan-out,
    /// which no example uses), and for its on-failure destination. Emulators do not check the
    /// role of a mapping's reads, so this is where a missing one is caught before AWS refuses.
    fn documented_mapping_permissions(mapping: &EventSourceMapping) -> Vec<(&'static str, String)> {
        let (actions, name): (&[&str], &str) = match &mapping.source {
            MappingSource::KinesisStream(s) => (
                &[
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                s,
            ),
            MappingSource::DynamodbTableStream(t) => (
                &[
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                t,
            ),
            MappingSource::SqsQueue(q) => (&["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], q),
        };
        let mut wanted: Vec<(&str, String)> = actions.iter().map(|a| (*a, name.to_owned())).collect();
        match &mapping.on_failure {
            Some(FailureDestination::SqsQueue(q)) => wanted.push(("sqs:SendMessage", q.clone())),
            Some(FailureDestination::SnsTopic(t)) => wanted.push(("sns:Publish", t.clone())),
            None => {}
        }
        wanted
    }

    #[test]
    fn every_mapping_role_holds_what_aws_documents_for_its_source() {
        for name in declared() {
            let stack = load(name).unwrap_or_else(|e| panic!("{e}"));
            for mapping in &stack.event_source_mappings {
                let function = stack.functions.iter().find(|f| f.name == mapping.function).unwrap();
                let role = stack.roles.iter().find(|r| r.name == function.role).unwrap();
                for (action, resource) in documented_mapping_permissions(mapping) {
                    // On the resource itself (a queue or stream), or below it (a table's streams).
                    let full = format!("${{prefix}}-{resource}");
                    let names_it = |arn: &String| arn.split([':', '/']).any(|part| part == full);
                    let granted = role
                        .statements
                        .iter()
                        .any(|s| s.actions.iter().any(|a| a == action) && s.resources.iter().any(names_it));
                    assert!(granted, "{name}: role {} lacks {action} on {resource}", role.name);
                }
            }
        }
    }

    #[test]
    fn stream_only_settings_are_checked() {
        let mapping: EventSourceMapping = toml::from_str(
            r#"
            function = "f"
            source = { kinesis_stream = "s" }
            starting_position = "TRIM_HORIZON"
            batch_size = 10
            parallelization_factor = 2
            maximum_record_age_seconds = 3600
            tumbling_window_seconds = 30
            on_failure = { sqs_queue = "failures" }
            enabled = false
            "#,
        )
        .unwrap();
        assert!(!mapping.enabled);
        assert_eq!(mapping.on_failure, Some(FailureDestination::SqsQueue("failures".into())));
        assert_eq!(mapping.check(), Ok(()));
        let from_queue = EventSourceMapping { source: MappingSource::SqsQueue("q".into()), ..mapping.clone() };
        assert_eq!(from_queue.check(), Err("parallelization factor applies to stream mappings only".into()));
        let too_wide = EventSourceMapping { parallelization_factor: Some(11), ..mapping.clone() };
        assert_eq!(too_wide.check(), Err("parallelization factor 11 is outside 1..=10".into()));
        let too_young = EventSourceMapping { maximum_record_age_seconds: Some(30), ..mapping.clone() };
        assert!(too_young.check().is_err());
        for (window, valid) in [(0, false), (1, true), (900, true), (901, false)] {
            let windowed = EventSourceMapping { tumbling_window_seconds: Some(window), ..mapping.clone() };
            assert_eq!(windowed.check().is_ok(), valid, "{window}");
        }
    }

    fn kinesis_mapping(extra: &str) -> EventSourceMapping {
        toml::from_str(&format!("function = \"f\"\nsource = {{ kinesis_stream = \"s\" }}\nbatch_size = 10\n{extra}"))
            .unwrap()
    }

    #[test]
    fn at_timestamp_needs_its_time_and_a_kinesis_stream() {
        let at = kinesis_mapping("starting_position = \"AT_TIMESTAMP\"\nstarting_position_timestamp = 1764547200.5");
        assert_eq!(at.check(), Ok(()));
        let table_stream = EventSourceMapping { source: MappingSource::DynamodbTableStream("t".into()), ..at.clone() };
        assert!(table_stream.check().unwrap_err().contains("Unsupported starting position for arn type"));
        let no_time = EventSourceMapping { starting_position_timestamp: None, ..at.clone() };
        assert!(no_time.check().unwrap_err().contains("needs starting_position_timestamp"));
        let time_without = EventSourceMapping { starting_position: Some("LATEST".into()), ..at };
        assert!(time_without.check().unwrap_err().contains("with starting_position = \"AT_TIMESTAMP\" only"));
        let unknown = kinesis_mapping("starting_position = \"EARLIEST\"");
        assert!(unknown.check().unwrap_err().contains("\"EARLIEST\" is not one of"));
    }

    #[test]
    fn filter_patterns_are_json_objects_and_at_most_five() {
        let filtered = kinesis_mapping(
            "starting_position = \"LATEST\"\nfilter_criteria = ['{\"data\": {\"kind\": [\"reading\"]}}']",
        );
        assert_eq!(filtered.filter_criteria.len(), 1);
        assert_eq!(filtered.check(), Ok(()));
        let not_an_object = EventSourceMapping { filter_criteria: vec!["[1]".into()], ..filtered.clone() };
        assert_eq!(not_an_object.check(), Err("the filter pattern [1] is not a JSON object".into()));
        let six = EventSourceMapping { filter_criteria: vec!["{}".into(); 6], ..filtered };
        assert_eq!(six.check(), Err("6 filters: at most 5 are allowed".into()));
    }

    #[test]
    fn a_bad_mapping_fails_the_load_in_one_line() {
        let source = "example = \"x\"\n[[event_source_mappings]]\nfunction = \"f\"\n\
                      source = { dynamodb_table_stream = \"t\" }\nstarting_position = \"LATEST\"\n\
                      batch_size = 10\ntumbling_window_seconds = 901\n";
        let error = parse("x", source).unwrap_err().to_string();
        assert_eq!(
            error,
            "infra/stacks/x.toml is not a valid declaration: the mapping t -> f: tumbling window 901 is outside 1..=900"
        );
    }

    #[test]
    fn kafka_topics_parse_beside_aws_resources_and_bad_partitions_are_refused() {
        let source = "example = \"x\"\n[[dynamodb_tables]]\nname = \"t\"\n\
                      partition_key = { name = \"id\", type = \"S\" }\n\
                      [[kafka_topics]]\nname = \"k\"\npartitions = 3\nconfig = { \"cleanup.policy\" = \"compact\" }\n";
        let stack = parse("x", source).unwrap();
        assert_eq!(stack.dynamodb_tables.len(), 1);
        assert_eq!(stack.kafka_topics[0].partitions, 3);
        assert_eq!(stack.kafka_topics[0].config["cleanup.policy"], "compact");
        assert_eq!(stack.check(&KafkaTopic::new("k").any()), Ok(()));
        let error = parse("x", &source.replace("partitions = 3", "partitions = 0")).unwrap_err().to_string();
        assert_eq!(
            error,
            "infra/stacks/x.toml is not a valid declaration: Kafka topic k: partitions must be 1 to 1000, not 0"
        );
    }

    #[test]
    fn unknown_example_is_a_clear_error() {
        assert_eq!(
            load("example-99").unwrap_err().to_string(),
            "example-99 provisions nothing yet: its lab has not been built"
        );
    }

    #[test]
    fn handles_are_checked_by_kind() {
        let stack = load("example-1").unwrap();
        let clicks = Stream::new("ex1-clicks");
        assert_eq!(stack.check(&clicks.any()), Ok(()));
        assert_eq!(clicks.full_name("p"), "p-ex1-clicks");
        let as_table = Table::new("ex1-clicks").any();
        assert_eq!(stack.check(&as_table), Err("example-1 declares no DynamoDB table named ex1-clicks".to_owned()));
    }

    #[test]
    fn expands_placeholders() {
        let vars = Vars { prefix: "p".into(), region: "r".into(), account: "1".into(), partition: "aws".into() };
        assert_eq!(vars.expand("arn:${partition}:x:${region}:${account}:${prefix}-t"), "arn:aws:x:r:1:p-t");
        assert_eq!(vars.name("ex1-clicks"), "p-ex1-clicks");
    }
}
