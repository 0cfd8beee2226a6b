//! The DynamoDB adapters against a real DynamoDB API (an emulator such as MiniStack or
//! LocalStack). Ignored by default; run with
//! `LEDGER_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p ledger-projector --test dynamo_store -- --ignored`.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use labs_core::ledger::check::{check_money, check_outcomes, check_rows, check_versions};
use labs_core::ledger::event::event_id;
use labs_core::ledger::projection::balances;
use labs_core::ledger::workload::{Step, WorkloadSpec, generate};
use labs_core::ledger::{Account, Action, Command, Event, EventKind, Rejection, Schema, Status, StoredEvent, fold};
use ledger_projector::{
    AppendError, BalanceStore, DynamoBalances, DynamoEventStore, DynamoStateTable, EventStore, ExecuteOptions, Outcome,
    ProjectError, StateTable, execute, load_account, project,
};

async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(function_bootstrap::https_client())
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    Client::new(&config)
}

async fn create_table(client: &Client, name: &str, keys: &[(&str, ScalarAttributeType, KeyType)]) {
    let mut request = client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, attribute_type, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(attribute_type.clone())
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(*attribute).key_type(key_type.clone()).build().unwrap(),
            );
    }
    request.send().await.unwrap();
}

struct Tables {
    events: String,
    rejections: String,
    snapshots: String,
    balances: String,
}

impl Tables {
    fn all(&self) -> [&String; 4] {
        [&self.events, &self.rejections, &self.snapshots, &self.balances]
    }
}

async fn setup(client: &Client, tag: &str) -> Tables {
    let name = |kind: &str| format!("ledger-test-{tag}-{kind}-{}", std::process::id());
    let tables = Tables {
        events: name("events"),
        rejections: name("rejections"),
        snapshots: name("snapshots"),
        balances: name("balances"),
    };
    use ScalarAttributeType::{N, S};
    create_table(client, &tables.events, &[("account_id", S, KeyType::Hash), ("version", N, KeyType::Range)]).await;
    create_table(client, &tables.rejections, &[("command_id", S, KeyType::Hash)]).await;
    create_table(client, &tables.snapshots, &[("account_id", S, KeyType::Hash)]).await;
    create_table(client, &tables.balances, &[("account_id", S, KeyType::Hash)]).await;
    tables
}

async fn teardown(client: &Client, tables: &Tables) {
    for table in tables.all() {
        client.delete_table().table_name(table).send().await.unwrap();
    }
}

async fn scan<T: serde::de::DeserializeOwned>(client: &Client, table: &str) -> Vec<T> {
    let mut rows = Vec::new();
    let mut start = None;
    loop {
        let page = client.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items.unwrap_or_default() {
            rows.push(serde_dynamo::from_item(item).unwrap());
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return rows;
        }
    }
}

fn endpoint() -> String {
    std::env::var("LEDGER_TEST_ENDPOINT").expect("LEDGER_TEST_ENDPOINT")
}

fn event(account: &str, version: u64, command: &str, kind: EventKind) -> StoredEvent {
    let event = Event {
        account_id: account.into(),
        version,
        event_id: event_id(command, account),
        command_id: command.into(),
        occurred_at: "2026-01-01T00:00:00Z".into(),
        kind,
    };
    StoredEvent::new(&event, Schema::CURRENT)
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in LEDGER_TEST_ENDPOINT"]
async fn a_workload_with_races_keeps_every_invariant() {
    let client = client(&endpoint()).await;
    let tables = setup(&client, "workload").await;
    let store = DynamoEventStore::new(client.clone(), &tables.events, &tables.rejections);
    let snapshots = DynamoStateTable::new(client.clone(), &tables.snapshots);
    let spec =
        WorkloadSpec { namespace: "dt".into(), seed: 7, accounts: 4, commands: 60, races: 8, invalid_percent: 15 };
    let workload = generate(&spec);
    // Every other command writes the old shape, so the store holds both.
    let options = |n: usize| ExecuteOptions {
        schema: if n.is_multiple_of(2) { Schema::V1 } else { Schema::V2 },
        max_attempts: 10,
        snapshot_every: 5,
    };
    let mut conflicts = 0;
    for (n, step) in workload.steps.iter().enumerate() {
        match step {
            Step::Single { command } => {
                execute(&store, &snapshots, command, options(n)).await.unwrap();
            }
            Step::Race { first, second } => {
                let (a, b) = tokio::join!(
                    execute(&store, &snapshots, first, options(n)),
                    execute(&store, &snapshots, second, options(n))
                );
                conflicts += a.unwrap().conflicts.len() + b.unwrap().conflicts.len();
            }
        }
    }
    println!("lost races: {conflicts}");

    let rows: Vec<StoredEvent> = scan(&client, &tables.events).await;
    let events: Vec<Event> = rows.iter().map(|row| row.event().unwrap()).collect();
    assert!(rows.iter().any(|r| r.schema == 1) && rows.iter().any(|r| r.schema == 2));
    let rejections: Vec<Rejection> = scan(&client, &tables.rejections).await;
    let commands: Vec<Command> = workload.commands().into_iter().cloned().collect();
    let versions = check_versions(&events);
    assert!(versions.is_ok(), "{versions:?}");
    let money = check_money(&events);
    assert!(money.is_ok(), "{money:?}");
    let outcomes = check_outcomes(&commands, &events, &rejections);
    assert!(outcomes.is_ok(), "{outcomes:?}");
    assert!(outcomes.rejected > 0 && outcomes.accepted > 0);

    // Snapshots equal a fold of what they cover, and loading from them equals a full replay.
    let snapshot_rows: Vec<Account> = scan(&client, &tables.snapshots).await;
    assert!(!snapshot_rows.is_empty());
    assert!(check_rows(&snapshot_rows, &events).is_empty());
    let expected = balances(&events).unwrap();
    for account in &workload.accounts {
        let loaded = load_account(&store, &snapshots, account).await.unwrap();
        assert_eq!(loaded.state, expected[account]);
        assert!(loaded.stats.snapshot_version > 0);
    }

    // The projection, fed the log twice (a redelivery), equals the fold.
    let balances_table = DynamoBalances::new(client.clone(), &tables.balances);
    project(&balances_table, &events).await.unwrap();
    let again = project(&balances_table, &events).await.unwrap();
    assert_eq!(again.applied, 0);
    let projected: Vec<Account> = scan(&client, &tables.balances).await;
    assert_eq!(projected.len(), expected.len());
    assert!(check_rows(&projected, &events).is_empty());
    teardown(&client, &tables).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in LEDGER_TEST_ENDPOINT"]
async fn appends_are_conditional_and_transfers_atomic() {
    let client = client(&endpoint()).await;
    let tables = setup(&client, "append").await;
    let store = DynamoEventStore::new(client.clone(), &tables.events, &tables.rejections);
    let opened =
        |account: &str| event(account, 1, &format!("open-{account}"), EventKind::AccountOpened { owner: "o".into() });
    store.append(&[opened("a")]).await.unwrap();
    store.append(&[opened("b")]).await.unwrap();
    // A second event at a taken version is refused.
    let again = store.append(&[event("a", 1, "other", EventKind::AccountClosed)]).await;
    assert_eq!(again, Err(AppendError::Conflict { account_id: "a".into(), version: 1 }));
    store.append(&[event("a", 2, "dep", EventKind::MoneyDeposited { amount: 100 })]).await.unwrap();

    // A transfer whose target version is taken writes neither side.
    store.append(&[event("b", 2, "dep-b", EventKind::MoneyDeposited { amount: 1 })]).await.unwrap();
    let transfer = |to_version| {
        vec![
            event("a", 3, "t1", EventKind::TransferSent { to: "b".into(), amount: 40 }),
            event("b", to_version, "t1", EventKind::TransferReceived { from: "a".into(), amount: 40 }),
        ]
    };
    let lost = store.append(&transfer(2)).await;
    assert_eq!(lost, Err(AppendError::Conflict { account_id: "b".into(), version: 2 }));
    assert_eq!(store.load("a", 0).await.unwrap().len(), 2);
    store.append(&transfer(3)).await.unwrap();

    // Loads return versions in numeric order (10 after 9, not after 1) and honour `after`.
    for version in 4..=11 {
        store
            .append(&[event("a", version, &format!("d{version}"), EventKind::MoneyDeposited { amount: 1 })])
            .await
            .unwrap();
    }
    let loaded: Vec<u64> = store.load("a", 0).await.unwrap().iter().map(|e| e.version).collect();
    assert_eq!(loaded, (1..=11).collect::<Vec<_>>());
    assert_eq!(store.load("a", 9).await.unwrap().len(), 2);
    let events: Vec<Event> = store.load("a", 0).await.unwrap().iter().map(|e| e.event().unwrap()).collect();
    assert_eq!(fold("a", &events).unwrap().balance, 100 - 40 + 8);

    // Concurrent appends at the same version: exactly one wins.
    let (x, y) = (
        [event("b", 4, "x", EventKind::MoneyDeposited { amount: 1 })],
        [event("b", 4, "y", EventKind::MoneyDeposited { amount: 2 })],
    );
    let (x, y) = tokio::join!(store.append(&x), store.append(&y));
    assert_eq!([x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(), 1, "{x:?} {y:?}");
    teardown(&client, &tables).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in LEDGER_TEST_ENDPOINT"]
async fn rejections_snapshots_and_balance_rows_round_trip() {
    let client = client(&endpoint()).await;
    let tables = setup(&client, "rows").await;
    let store = DynamoEventStore::new(client.clone(), &tables.events, &tables.rejections);
    let snapshots = DynamoStateTable::new(client.clone(), &tables.snapshots);
    let command =
        |id: &str, action| Command { command_id: id.into(), issued_at: "2026-01-01T00:00:00Z".into(), action };
    let options = ExecuteOptions::default();
    let open = command("c1", Action::Open { account_id: "a".into(), owner: "Ada".into() });
    execute(&store, &snapshots, &open, options).await.unwrap();
    let overdraw = command("c2", Action::Withdraw { account_id: "a".into(), amount: 5 });
    let refused = execute(&store, &snapshots, &overdraw, options).await.unwrap();
    let Outcome::Rejected { rejection } = refused.outcome else { panic!("{refused:?}") };
    let logged: Vec<Rejection> = scan(&client, &tables.rejections).await;
    assert_eq!(logged, vec![rejection]);

    let state = |version, balance| Account {
        account_id: "a".into(),
        version,
        status: Status::Open,
        owner: "Ada".into(),
        balance,
    };
    assert!(snapshots.put_if_newer(&state(3, 30)).await.unwrap());
    assert!(!snapshots.put_if_newer(&state(2, 20)).await.unwrap());
    assert!(!snapshots.put_if_newer(&state(3, 99)).await.unwrap());
    assert_eq!(snapshots.get("a").await.unwrap(), Some(state(3, 30)));
    assert_eq!(snapshots.get("nobody").await.unwrap(), None);

    let balances = DynamoBalances::new(client.clone(), &tables.balances);
    assert!(balances.put_row(&state(1, 0), 0).await.unwrap());
    assert!(!balances.put_row(&state(2, 5), 0).await.unwrap());
    assert!(!balances.put_row(&state(2, 5), 3).await.unwrap());
    assert!(balances.put_row(&state(2, 5), 1).await.unwrap());
    let ids: Vec<String> = (0..150).map(|n| format!("missing-{n}")).chain(["a".to_owned()]).collect();
    let rows = balances.get_rows(&ids).await.unwrap();
    assert_eq!(rows.into_iter().collect::<BTreeMap<_, _>>(), BTreeMap::from([("a".to_owned(), state(2, 5))]));

    // A gap between the row and the batch is an error, and the row stays.
    let later = event("a", 4, "c4", EventKind::MoneyDeposited { amount: 1 }).event().unwrap();
    let gap = project(&balances, &[later]).await;
    assert!(matches!(gap, Err(ProjectError::Gap { after: 2, next: 4, .. })), "{gap:?}");
    assert_eq!(balances.get_rows(&["a".to_owned()]).await.unwrap()["a"], state(2, 5));
    teardown(&client, &tables).await;
}
