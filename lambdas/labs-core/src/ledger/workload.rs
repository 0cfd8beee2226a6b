//! A seeded command workload: accounts opened and funded, then deposits, withdrawals and
//! transfers, with invalid commands and racing pairs mixed in.
//!
//! The generator guesses balances as if every command ran alone, in order, to keep amounts
//! plausible; which of two racing commands wins depends on timing, so nothing downstream may
//! rely on that guess. Verifiers regenerate the commands from the seed and compare them with what
//! was recorded (events and rejections).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::command::{Action, Command};

/// Settings that fully determine a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Starts every account and command id, so runs of several scenarios can share the tables.
    pub namespace: String,
    pub seed: u64,
    pub accounts: usize,
    /// Commands after the opening ones (each race counts as two).
    pub commands: usize,
    /// Of those, how many pairs race on one account.
    pub races: usize,
    /// Share of the single commands meant to be refused, in percent.
    pub invalid_percent: u32,
}

/// One step of the workload: a command alone, or two sent at the same time, on one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Single { command: Command },
    Race { first: Command, second: Command },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The accounts the commands pick from, opened and funded by the first steps.
    pub accounts: Vec<String>,
    /// An account opened and closed right after them, for commands on a closed account.
    pub closed_account: String,
    pub steps: Vec<Step>,
}

impl Workload {
    /// Every command, in step order (a race's first command first).
    pub fn commands(&self) -> Vec<&Command> {
        self.steps
            .iter()
            .flat_map(|step| match step {
                Step::Single { command } => vec![command],
                Step::Race { first, second } => vec![first, second],
            })
            .collect()
    }
}

/// Commands are issued from this time on (2026-01-01T00:00:00Z) ...
const START_UNIX: i64 = 1_767_225_600;
/// ... over this long (120 days), so monthly projections have several months to show.
const SPAN_SECONDS: i64 = 120 * 24 * 3600;

fn mixed_seed(spec: &WorkloadSpec) -> u64 {
    spec.namespace
        .bytes()
        .fold(spec.seed ^ 0x5851_f42d_4c95_7f2d, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

struct Generator<'a> {
    spec: &'a WorkloadSpec,
    rng: ChaCha8Rng,
    /// Balances as if every command so far ran alone and in order.
    guessed: BTreeMap<String, u64>,
    accounts: Vec<String>,
    closed_account: String,
    issued: usize,
    total: usize,
}

impl Generator<'_> {
    fn command(&mut self, action: Action) -> Command {
        let index = self.issued;
        self.issued += 1;
        let offset = SPAN_SECONDS * index as i64 / self.total.max(1) as i64;
        let issued_at =
            OffsetDateTime::from_unix_timestamp(START_UNIX + offset).ok().and_then(|t| t.format(&Rfc3339).ok());
        Command {
            command_id: format!("{}{}-c{index:05}", self.spec.namespace, self.spec.seed),
            issued_at: issued_at.unwrap_or_default(),
            action,
        }
    }

    fn pick_account(&mut self) -> String {
        let index = self.rng.random_range(0..self.accounts.len());
        self.accounts[index].clone()
    }

    fn guess(&self, account: &str) -> u64 {
        self.guessed.get(account).copied().unwrap_or(0)
    }

    fn apply_guess(&mut self, action: &Action) {
        match action {
            Action::Deposit { account_id, amount } => *self.guessed.entry(account_id.clone()).or_default() += amount,
            Action::Withdraw { account_id, amount } => {
                let balance = self.guessed.entry(account_id.clone()).or_default();
                *balance = balance.saturating_sub(*amount);
            }
            Action::Transfer { from, to, amount } => {
                let balance = self.guessed.entry(from.clone()).or_default();
                *balance = balance.saturating_sub(*amount);
                *self.guessed.entry(to.clone()).or_default() += amount;
            }
            Action::Open { .. } | Action::Close { .. } => {}
        }
    }

    /// A command that should be accepted if it runs alone, given the guessed balances.
    fn valid_action(&mut self) -> Action {
        let account = self.pick_account();
        let balance = self.guess(&account);
        match self.rng.random_range(0..10) {
            0..=3 => Action::Deposit { account_id: account, amount: self.rng.random_range(100..=20_000) },
            4..=6 if balance >= 100 => Action::Withdraw {
                account_id: account,
                amount: self.rng.random_range(100..=balance.max(100) / 2 + 100).min(balance),
            },
            7..=9 if balance >= 100 && self.accounts.len() > 1 => {
                let mut to = self.pick_account();
                while to == account {
                    to = self.pick_account();
                }
                Action::Transfer { from: account, to, amount: self.rng.random_range(1..=balance / 3 + 1) }
            }
            _ => Action::Deposit { account_id: account, amount: self.rng.random_range(100..=5_000) },
        }
    }

    /// A command that should be refused, of a kind chosen at random.
    fn invalid_action(&mut self) -> Action {
        let account = self.pick_account();
        let balance = self.guess(&account);
        let ghost = format!("{}{}-ghost-{}", self.spec.namespace, self.spec.seed, self.rng.random_range(0..100));
        match self.rng.random_range(0..7) {
            6 => Action::Transfer { from: account, to: self.closed_account.clone(), amount: 1 },
            0 => Action::Withdraw { account_id: account, amount: balance + self.rng.random_range(1..=10_000) },
            1 => Action::Deposit { account_id: ghost, amount: 500 },
            2 => Action::Transfer { from: account.clone(), to: account, amount: 1 },
            3 => Action::Withdraw { account_id: account, amount: 0 },
            4 => Action::Open { account_id: account, owner: "someone else".into() },
            _ if balance > 0 => Action::Close { account_id: account },
            _ => Action::Transfer { from: account, to: ghost, amount: 1 },
        }
    }

    /// Two commands on one account sent together: two withdrawals that fit the balance one at a
    /// time but not both (the loser, retried on the new state, is refused), or a deposit and a
    /// withdrawal (both go through, one after a retry).
    fn race(&mut self, index: usize) -> (Action, Action) {
        let account = self.pick_account();
        let balance = self.guess(&account);
        if index.is_multiple_of(2) && balance >= 200 {
            let amount = balance / 2 + self.rng.random_range(1..=balance / 4);
            let first = Action::Withdraw { account_id: account.clone(), amount };
            (first, Action::Withdraw { account_id: account, amount })
        } else {
            let deposit = Action::Deposit { account_id: account.clone(), amount: self.rng.random_range(100..=5_000) };
            let amount = self.rng.random_range(1..=balance.max(1));
            (deposit, Action::Withdraw { account_id: account, amount })
        }
    }
}

/// Generates the workload `spec` describes. The same spec always gives the same workload.
pub fn generate(spec: &WorkloadSpec) -> Workload {
    let accounts: Vec<String> =
        (0..spec.accounts.max(1)).map(|n| format!("{}{}-acct-{n:03}", spec.namespace, spec.seed)).collect();
    let closed_account = format!("{}{}-closed", spec.namespace, spec.seed);
    let races = spec.races.min(spec.commands / 2);
    let singles = spec.commands - 2 * races;
    let mut generator = Generator {
        spec,
        rng: ChaCha8Rng::seed_from_u64(mixed_seed(spec)),
        guessed: BTreeMap::new(),
        accounts: accounts.clone(),
        closed_account: closed_account.clone(),
        issued: 0,
        total: 2 * accounts.len() + 2 + spec.commands,
    };
    let mut steps = Vec::new();
    for (n, account) in accounts.iter().enumerate() {
        let open = Action::Open { account_id: account.clone(), owner: format!("owner-{n:03}") };
        steps.push(Step::Single { command: generator.command(open) });
    }
    for account in &accounts {
        let deposit =
            Action::Deposit { account_id: account.clone(), amount: generator.rng.random_range(1_000..=50_000) };
        generator.apply_guess(&deposit);
        steps.push(Step::Single { command: generator.command(deposit) });
    }
    let open = Action::Open { account_id: closed_account.clone(), owner: "owner-closed".into() };
    steps.push(Step::Single { command: generator.command(open) });
    let close = Action::Close { account_id: closed_account.clone() };
    steps.push(Step::Single { command: generator.command(close) });
    // Where the races go among the single commands: spread evenly, so each sees a funded account.
    let race_every = singles.checked_div(races).map_or(usize::MAX, |every| every.max(1));
    let (mut singles_left, mut races_left) = (singles, races);
    let mut since_race = 0;
    while singles_left > 0 || races_left > 0 {
        if races_left > 0 && (since_race >= race_every || singles_left == 0) {
            let (first, second) = generator.race(races - races_left);
            generator.apply_guess(&first);
            generator.apply_guess(&second);
            let (first, second) = (generator.command(first), generator.command(second));
            steps.push(Step::Race { first, second });
            races_left -= 1;
            since_race = 0;
        } else {
            let invalid = generator.rng.random_range(0..100) < spec.invalid_percent;
            let action = if invalid { generator.invalid_action() } else { generator.valid_action() };
            if !invalid {
                generator.apply_guess(&action);
            }
            steps.push(Step::Single { command: generator.command(action) });
            singles_left -= 1;
            since_race += 1;
        }
    }
    Workload { accounts, closed_account, steps }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ledger::account::{Account, decide, evolve};
    use crate::ledger::check::{check_money, check_outcomes, check_versions};
    use crate::ledger::command::RejectReason;

    fn spec(seed: u64) -> WorkloadSpec {
        WorkloadSpec { namespace: "t".into(), seed, accounts: 6, commands: 200, races: 10, invalid_percent: 15 }
    }

    /// Runs the workload one command at a time, the race's first command winning, and the second
    /// decided afterwards on the new state, as the loser's retry would be.
    fn run_serially(workload: &Workload) -> (Vec<crate::ledger::event::Event>, Vec<crate::ledger::command::Rejection>) {
        let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
        let (mut events, mut rejections) = (Vec::new(), Vec::new());
        for command in workload.commands() {
            match decide(&accounts, command) {
                Ok(new) => {
                    for event in &new {
                        let state =
                            accounts.remove(&event.account_id).unwrap_or_else(|| Account::new(&event.account_id));
                        accounts.insert(event.account_id.clone(), evolve(state, event));
                    }
                    events.extend(new);
                }
                Err(rejection) => rejections.push(rejection),
            }
        }
        (events, rejections)
    }

    #[test]
    fn the_same_spec_gives_the_same_workload_and_another_seed_another() {
        assert_eq!(generate(&spec(1)), generate(&spec(1)));
        assert_ne!(generate(&spec(1)).steps, generate(&spec(2)).steps);
    }

    #[test]
    fn it_has_the_requested_size_unique_ids_and_times_in_order() {
        let workload = generate(&spec(3));
        let commands = workload.commands();
        assert_eq!(commands.len(), 2 * 6 + 2 + 200);
        let races = workload.steps.iter().filter(|s| matches!(s, Step::Race { .. })).count();
        assert_eq!(races, 10);
        let ids: BTreeSet<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
        assert_eq!(ids.len(), commands.len());
        assert!(commands.windows(2).all(|w| w[0].issued_at <= w[1].issued_at));
        assert!(commands[0].issued_at.starts_with("2026-01-01T"));
        let months: BTreeSet<&str> = commands.iter().map(|c| &c.issued_at[..7]).collect();
        assert!(months.len() >= 4, "{months:?}");
    }

    #[test]
    fn races_are_on_one_account() {
        for step in &generate(&spec(4)).steps {
            if let Step::Race { first, second } = step {
                assert_eq!(first.action.accounts(), second.action.accounts());
            }
        }
    }

    #[test]
    fn run_alone_it_has_accepted_and_refused_commands_and_keeps_money() {
        let workload = generate(&spec(5));
        let (events, rejections) = run_serially(&workload);
        let commands: Vec<Command> = workload.commands().into_iter().cloned().collect();
        let outcomes = check_outcomes(&commands, &events, &rejections);
        assert!(outcomes.is_ok(), "{outcomes:?}");
        // Invalid commands are refused, and so are a share of the racing withdrawals.
        assert!(outcomes.rejected >= 20, "{outcomes:?}");
        assert!(outcomes.accepted >= 150, "{outcomes:?}");
        let reasons: BTreeSet<String> =
            rejections.iter().map(|r| format!("{:?}", r.reason).split([' ', '{']).next().unwrap().to_owned()).collect();
        assert!(reasons.len() >= 5, "{reasons:?}");
        assert!(rejections.iter().any(|r| r.account_id == workload.closed_account && r.reason == RejectReason::Closed));
        assert!(check_versions(&events).is_ok());
        assert!(check_money(&events).is_ok());
    }
}
