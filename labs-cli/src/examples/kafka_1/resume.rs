//! `resume`: a consumer processes part of the log, commits part of what it processed, and is
//! killed (dropped without committing the rest, as a crash would). Its replacement joins the
//! same group and starts at the committed offsets: what was processed after the last commit is
//! processed again (at-least-once), nothing is skipped.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::{IDLE, Produced, consume_together, group_name, settle_together, start_group_at_run};
use crate::driver::kafka::{self, GroupMember, Incoming};
use crate::output::Output;

pub(super) const NAME: &str = "resume";

pub(super) async fn run(bootstrap: &str, topic: &str, produced: &Produced, out: Output) -> Result<Vec<String>> {
    let count = produced.run.count;
    let group = group_name(topic, produced.run.seed, "resume");
    out.say(format!("resume: a member of {group} is killed after its commit; its replacement resumes there"));
    start_group_at_run(bootstrap, topic, &group, produced).await?;
    let first = GroupMember::join(bootstrap, &group, "worker-1", topic)?;
    // Process about half the run, commit the first half of that, then crash.
    let mut processed: Vec<Incoming> = settle_together(&[&first], produced).await?.remove(0);
    while processed.len() < count / 2 {
        let more = first.poll(count / 2 - processed.len(), IDLE).await?;
        if more.is_empty() {
            break;
        }
        processed.extend(more);
    }
    // The first half of what it processed in each partition: a commit every so many records.
    let mut per_partition: BTreeMap<i32, Vec<&Incoming>> = BTreeMap::new();
    for record in &processed {
        per_partition.entry(record.partition).or_default().push(record);
    }
    let committed_part: Vec<Incoming> =
        per_partition.values().flat_map(|records| records[..records.len() / 2].iter().map(|r| (*r).clone())).collect();
    let committed = first.commit(&committed_part)?;
    // A crash: gone without committing what it processed since. (Its client still says goodbye
    // to the coordinator, so the group rebalances at once instead of after the session timeout.)
    first.kill();
    let on_broker = kafka::committed(bootstrap, &group, topic, produced.start.len() as i32).await?;
    let second = GroupMember::join(bootstrap, &group, "worker-2", topic)?;
    let mut resumed = settle_together(&[&second], produced).await?.remove(0);
    resumed.extend(consume_together(&[&second], count).await?.remove(0));
    second.commit(&resumed)?;
    second.leave().await?;

    let first_resumed: BTreeMap<i32, i64> = resumed.iter().fold(BTreeMap::new(), |mut firsts, r| {
        firsts.entry(r.partition).or_insert(r.offset);
        firsts
    });
    let reprocessed = processed.len() - committed_part.len();
    let rows = produced.start.keys().map(|partition| {
        let show = |v: Option<&i64>| v.map_or("-".to_owned(), i64::to_string);
        vec![
            partition.to_string(),
            show(committed.get(partition)),
            show(on_broker.get(partition).and_then(Option::as_ref)),
            show(first_resumed.get(partition)),
        ]
    });
    out.table(
        "Where worker-2 resumed",
        &["partition", "worker-1 committed", "the coordinator holds", "worker-2's first offset"],
        rows,
    );
    out.say(format!(
        "   worker-1 processed {} records and committed after {}; worker-2 read {} records, {reprocessed} of them a \
         second time (processed after the last commit): at-least-once, nothing skipped",
        processed.len(),
        committed_part.len(),
        resumed.len()
    ));
    if processed.len() + resumed.len() != count + reprocessed {
        bail!(
            "the two workers read {} + {} records, expected {count} plus the {reprocessed} processed after the commit",
            processed.len(),
            resumed.len()
        );
    }
    Ok(vec![group])
}
