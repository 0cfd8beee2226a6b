//! The events of a bank account and their two wire shapes.
//!
//! Every shape carries, at its top level, `account_id`, `version`, `event_id`, `command_id` and
//! `occurred_at`, so that a store, a relay or a verifier can place an event without knowing its
//! type or its shape version. What changed between the versions is only the body:
//!
//! - v1 (no `schema` field: the first writers did not think of versioning) gives amounts as
//!   `amount_cents`, an integer, the currency being implied (EUR).
//! - v2 (`"schema": 2`) gives amounts as `amount: {"cents": .., "currency": ..}`.
//!
//! [`decode_event`] upcasts both into one [`Event`], so that `evolve` and every projection see a
//! single shape; [`encode_event`] writes either (v2 for new events, v1 to play an old writer).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only currency accounts hold. v1 events imply it.
pub const CURRENCY: &str = "EUR";

/// An event as every reader sees it once upcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub account_id: String,
    /// 1, 2, 3, ... within the account: the event's position in the account's history.
    pub version: u64,
    /// Unique across accounts: `<command_id>/<account_id>`, so a transfer's two events differ.
    pub event_id: String,
    /// The command that produced it.
    pub command_id: String,
    /// RFC 3339 UTC time, e.g. `2026-03-01T12:00:00Z`.
    pub occurred_at: String,
    pub kind: EventKind,
}

/// What happened. Amounts are in cents and always positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    AccountOpened {
        owner: String,
    },
    MoneyDeposited {
        amount: u64,
    },
    MoneyWithdrawn {
        amount: u64,
    },
    /// Money left this account for `to`; the same command appends [`EventKind::TransferReceived`]
    /// to `to` in the same transaction.
    TransferSent {
        to: String,
        amount: u64,
    },
    TransferReceived {
        from: String,
        amount: u64,
    },
    AccountClosed,
}

impl EventKind {
    /// The type name written to the wire (`"type"`) and to the store.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::AccountOpened { .. } => "AccountOpened",
            EventKind::MoneyDeposited { .. } => "MoneyDeposited",
            EventKind::MoneyWithdrawn { .. } => "MoneyWithdrawn",
            EventKind::TransferSent { .. } => "TransferSent",
            EventKind::TransferReceived { .. } => "TransferReceived",
            EventKind::AccountClosed => "AccountClosed",
        }
    }

    /// How the event changes the balance, in cents.
    pub fn balance_delta(&self) -> i128 {
        match self {
            EventKind::MoneyDeposited { amount } | EventKind::TransferReceived { amount, .. } => i128::from(*amount),
            EventKind::MoneyWithdrawn { amount } | EventKind::TransferSent { amount, .. } => -i128::from(*amount),
            EventKind::AccountOpened { .. } | EventKind::AccountClosed => 0,
        }
    }
}

/// The wire shape an event is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Schema {
    V1,
    V2,
}

impl Schema {
    pub const CURRENT: Schema = Schema::V2;

    pub fn number(self) -> u32 {
        match self {
            Schema::V1 => 1,
            Schema::V2 => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("not a ledger event: {0}")]
    Malformed(String),
    #[error("event {event_id} has schema {schema}, which this reader does not know")]
    UnknownSchema { event_id: String, schema: u64 },
    #[error("event {event_id} is in {currency}, but accounts hold only {CURRENCY}")]
    UnknownCurrency { event_id: String, currency: String },
    #[error("event {event_id} has amount 0; amounts are positive")]
    ZeroAmount { event_id: String },
}

/// The fields every shape has at its top level.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    account_id: String,
    version: u64,
    event_id: String,
    command_id: String,
    occurred_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
enum BodyV1 {
    AccountOpened { owner: String },
    MoneyDeposited { amount_cents: u64 },
    MoneyWithdrawn { amount_cents: u64 },
    TransferSent { to: String, amount_cents: u64 },
    TransferReceived { from: String, amount_cents: u64 },
    AccountClosed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Money {
    cents: u64,
    currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
enum BodyV2 {
    AccountOpened { owner: String },
    MoneyDeposited { amount: Money },
    MoneyWithdrawn { amount: Money },
    TransferSent { to: String, amount: Money },
    TransferReceived { from: String, amount: Money },
    AccountClosed,
}

#[derive(Serialize, Deserialize)]
struct WireV1 {
    #[serde(flatten)]
    head: Head,
    #[serde(flatten)]
    body: BodyV1,
}

#[derive(Serialize, Deserialize)]
struct WireV2 {
    schema: u32,
    #[serde(flatten)]
    head: Head,
    #[serde(flatten)]
    body: BodyV2,
}

fn euros(cents: u64) -> Money {
    Money { cents, currency: CURRENCY.to_owned() }
}

/// The JSON text of `event` in the shape `schema`.
pub fn encode_event(event: &Event, schema: Schema) -> String {
    let head = Head {
        account_id: event.account_id.clone(),
        version: event.version,
        event_id: event.event_id.clone(),
        command_id: event.command_id.clone(),
        occurred_at: event.occurred_at.clone(),
    };
    let text = match schema {
        Schema::V1 => {
            let body = match event.kind.clone() {
                EventKind::AccountOpened { owner } => BodyV1::AccountOpened { owner },
                EventKind::MoneyDeposited { amount } => BodyV1::MoneyDeposited { amount_cents: amount },
                EventKind::MoneyWithdrawn { amount } => BodyV1::MoneyWithdrawn { amount_cents: amount },
                EventKind::TransferSent { to, amount } => BodyV1::TransferSent { to, amount_cents: amount },
                EventKind::TransferReceived { from, amount } => BodyV1::TransferReceived { from, amount_cents: amount },
                EventKind::AccountClosed => BodyV1::AccountClosed,
            };
            serde_json::to_string(&WireV1 { head, body })
        }
        Schema::V2 => {
            let body = match event.kind.clone() {
                EventKind::AccountOpened { owner } => BodyV2::AccountOpened { owner },
                EventKind::MoneyDeposited { amount } => BodyV2::MoneyDeposited { amount: euros(amount) },
                EventKind::MoneyWithdrawn { amount } => BodyV2::MoneyWithdrawn { amount: euros(amount) },
                EventKind::TransferSent { to, amount } => BodyV2::TransferSent { to, amount: euros(amount) },
                EventKind::TransferReceived { from, amount } => {
                    BodyV2::TransferReceived { from, amount: euros(amount) }
                }
                EventKind::AccountClosed => BodyV2::AccountClosed,
            };
            serde_json::to_string(&WireV2 { schema: 2, head, body })
        }
    };
    // Plain strings and integers only: serializing cannot fail.
    text.unwrap_or_default()
}

/// The shape `json` is written in, without decoding the rest: `schema` absent means v1.
pub fn schema_of(json: &serde_json::Value) -> Result<Schema, DecodeError> {
    match json.get("schema") {
        None => Ok(Schema::V1),
        Some(value) => match value.as_u64() {
            Some(1) => Ok(Schema::V1),
            Some(2) => Ok(Schema::V2),
            Some(schema) => Err(DecodeError::UnknownSchema {
                event_id: json.get("event_id").and_then(|v| v.as_str()).unwrap_or("?").to_owned(),
                schema,
            }),
            None => Err(DecodeError::Malformed(format!("schema is {value}, not a number"))),
        },
    }
}

/// Decodes an event in either shape and upcasts it to [`Event`] (the upcaster).
pub fn decode_event(text: &str) -> Result<Event, DecodeError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let malformed = |e: serde_json::Error| DecodeError::Malformed(e.to_string());
    let (head, kind) = match schema_of(&json)? {
        Schema::V1 => {
            let wire: WireV1 = serde_json::from_value(json).map_err(malformed)?;
            let kind = match wire.body {
                BodyV1::AccountOpened { owner } => EventKind::AccountOpened { owner },
                BodyV1::MoneyDeposited { amount_cents } => EventKind::MoneyDeposited { amount: amount_cents },
                BodyV1::MoneyWithdrawn { amount_cents } => EventKind::MoneyWithdrawn { amount: amount_cents },
                BodyV1::TransferSent { to, amount_cents } => EventKind::TransferSent { to, amount: amount_cents },
                BodyV1::TransferReceived { from, amount_cents } => {
                    EventKind::TransferReceived { from, amount: amount_cents }
                }
                BodyV1::AccountClosed => EventKind::AccountClosed,
            };
            (wire.head, kind)
        }
        Schema::V2 => {
            let wire: WireV2 = serde_json::from_value(json).map_err(malformed)?;
            let event_id = wire.head.event_id.clone();
            let cents = |money: Money| {
                if money.currency == CURRENCY {
                    Ok(money.cents)
                } else {
                    Err(DecodeError::UnknownCurrency { event_id: event_id.clone(), currency: money.currency })
                }
            };
            let kind = match wire.body {
                BodyV2::AccountOpened { owner } => EventKind::AccountOpened { owner },
                BodyV2::MoneyDeposited { amount } => EventKind::MoneyDeposited { amount: cents(amount)? },
                BodyV2::MoneyWithdrawn { amount } => EventKind::MoneyWithdrawn { amount: cents(amount)? },
                BodyV2::TransferSent { to, amount } => EventKind::TransferSent { to, amount: cents(amount)? },
                BodyV2::TransferReceived { from, amount } => {
                    EventKind::TransferReceived { from, amount: cents(amount)? }
                }
                BodyV2::AccountClosed => EventKind::AccountClosed,
            };
            (wire.head, kind)
        }
    };
    if kind.balance_delta() == 0 && !matches!(kind, EventKind::AccountOpened { .. } | EventKind::AccountClosed) {
        return Err(DecodeError::ZeroAmount { event_id: head.event_id });
    }
    Ok(Event {
        account_id: head.account_id,
        version: head.version,
        event_id: head.event_id,
        command_id: head.command_id,
        occurred_at: head.occurred_at,
        kind,
    })
}

/// The id of the event `command_id` appends to `account_id`.
pub fn event_id(command_id: &str, account_id: &str) -> String {
    format!("{command_id}/{account_id}")
}

/// How an event is kept in the event store: the top-level fields as attributes (the table's keys
/// `account_id` and `version` among them, the rest for queries and checks without decoding) and
/// the event itself as written, in `body`, so the relay forwards it byte for byte, in whatever
/// shape its writer used. Shared by the store adapter (writes it) and the relay (reads it from
/// the stream's new image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub account_id: String,
    pub version: u64,
    pub event_id: String,
    pub command_id: String,
    pub occurred_at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema: u32,
    /// The event's JSON text.
    pub body: String,
}

impl StoredEvent {
    pub fn new(event: &Event, schema: Schema) -> Self {
        Self {
            account_id: event.account_id.clone(),
            version: event.version,
            event_id: event.event_id.clone(),
            command_id: event.command_id.clone(),
            occurred_at: event.occurred_at.clone(),
            event_type: event.kind.type_name().to_owned(),
            schema: schema.number(),
            body: encode_event(event, schema),
        }
    }

    /// Decodes `body`, and checks that it agrees with the attributes (a hand-edited row may not).
    pub fn event(&self) -> Result<Event, DecodeError> {
        let event = decode_event(&self.body)?;
        if event.account_id != self.account_id || event.version != self.version || event.event_id != self.event_id {
            return Err(DecodeError::Malformed(format!(
                "stored row ({}, v{}, {}) holds event ({}, v{}, {})",
                self.account_id, self.version, self.event_id, event.account_id, event.version, event.event_id
            )));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deposit() -> Event {
        Event {
            account_id: "acct-1".into(),
            version: 2,
            event_id: "c7/acct-1".into(),
            command_id: "c7".into(),
            occurred_at: "2026-03-01T12:00:00Z".into(),
            kind: EventKind::MoneyDeposited { amount: 1250 },
        }
    }

    #[test]
    fn both_shapes_carry_the_head_at_the_top_level() {
        for schema in [Schema::V1, Schema::V2] {
            let json: serde_json::Value = serde_json::from_str(&encode_event(&deposit(), schema)).unwrap();
            for field in ["account_id", "version", "event_id", "command_id", "occurred_at", "type"] {
                assert!(json.get(field).is_some(), "{schema:?} lacks {field}: {json}");
            }
        }
    }

    #[test]
    fn v1_and_v2_upcast_to_the_same_event() {
        let v1 = r#"{"type":"MoneyDeposited","account_id":"acct-1","version":2,"event_id":"c7/acct-1",
            "command_id":"c7","occurred_at":"2026-03-01T12:00:00Z","amount_cents":1250}"#;
        let v2 = r#"{"schema":2,"type":"MoneyDeposited","account_id":"acct-1","version":2,"event_id":"c7/acct-1",
            "command_id":"c7","occurred_at":"2026-03-01T12:00:00Z","amount":{"cents":1250,"currency":"EUR"}}"#;
        assert_eq!(decode_event(v1).unwrap(), deposit());
        assert_eq!(decode_event(v2).unwrap(), deposit());
    }

    #[test]
    fn every_kind_round_trips_in_both_shapes() {
        let kinds = [
            EventKind::AccountOpened { owner: "Ada".into() },
            EventKind::MoneyDeposited { amount: 1 },
            EventKind::MoneyWithdrawn { amount: 2 },
            EventKind::TransferSent { to: "b".into(), amount: 3 },
            EventKind::TransferReceived { from: "a".into(), amount: 4 },
            EventKind::AccountClosed,
        ];
        for kind in kinds {
            let event = Event { kind, ..deposit() };
            for schema in [Schema::V1, Schema::V2] {
                let text = encode_event(&event, schema);
                assert_eq!(decode_event(&text).unwrap(), event, "{text}");
                assert_eq!(schema_of(&serde_json::from_str(&text).unwrap()).unwrap(), schema);
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let v2 = encode_event(&deposit(), Schema::V2);
        let v3 = v2.replace(r#""schema":2"#, r#""schema":3"#);
        assert!(matches!(decode_event(&v3), Err(DecodeError::UnknownSchema { schema: 3, .. })));
        let usd = v2.replace("EUR", "USD");
        assert!(matches!(decode_event(&usd), Err(DecodeError::UnknownCurrency { .. })));
        let zero = v2.replace("1250", "0");
        assert!(matches!(decode_event(&zero), Err(DecodeError::ZeroAmount { .. })));
        let headless = v2.replace(r#""command_id":"c7","#, "");
        assert!(matches!(decode_event(&headless), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode_event("not json"), Err(DecodeError::Malformed(_))));
        let unknown_type = v2.replace("MoneyDeposited", "MoneyPrinted");
        assert!(matches!(decode_event(&unknown_type), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn a_stored_row_must_agree_with_its_body() {
        let row = StoredEvent::new(&deposit(), Schema::V1);
        assert_eq!(row.schema, 1);
        assert_eq!(row.event_type, "MoneyDeposited");
        assert_eq!(row.event().unwrap(), deposit());
        let edited = StoredEvent { version: 3, ..row };
        assert!(matches!(edited.event(), Err(DecodeError::Malformed(_))));
    }
}
