//! `groups`: one group with two members splits the partitions (load balancing: each record is
//! read once, by one of them); two more groups each read everything (fan-out: every group gets
//! every record, each at its own pace, with its own committed offsets).

use anyhow::Result;

use super::{
    Produced, consume_together, describe_events, group_name, of_seed, owners_rows, settle_together, start_group_at_run,
};
use crate::driver::kafka::GroupMember;
use crate::output::Output;

pub(super) const NAME: &str = "groups";

pub(super) async fn run(bootstrap: &str, topic: &str, produced: &Produced, out: Output) -> Result<Vec<String>> {
    let seed = produced.run.seed;
    let count = produced.run.count;
    out.say("groups: members of one group split the partitions; separate groups each read everything");
    let shared = group_name(topic, seed, "shared");
    let (audit, search) = (group_name(topic, seed, "audit"), group_name(topic, seed, "search"));
    for group in [&shared, &audit, &search] {
        start_group_at_run(bootstrap, topic, group, produced).await?;
    }
    let a = GroupMember::join(bootstrap, &shared, "shared-a", topic)?;
    let b = GroupMember::join(bootstrap, &shared, "shared-b", topic)?;
    let c = GroupMember::join(bootstrap, &audit, "audit-1", topic)?;
    let d = GroupMember::join(bootstrap, &search, "search-1", topic)?;
    let members = [&a, &b, &c, &d];
    let mut read = settle_together(&members, produced).await?;
    let owners = owners_rows(&members)?;
    let more = consume_together(&members, 3 * count).await?;
    for (slot, records) in read.iter_mut().zip(more) {
        slot.extend(records);
    }
    let mut rows = Vec::new();
    for ((member, records), owned) in members.iter().zip(&read).zip(owners) {
        member.commit(records)?;
        let ours = records.iter().filter(|r| of_seed(r, seed)).count();
        rows.push(vec![
            member.group.clone(),
            member.name.clone(),
            owned[1].clone(),
            ours.to_string(),
            describe_events(&member.events()),
        ]);
    }
    out.table(
        &format!("{count} records, read by three groups"),
        &["group", "member", "partitions it owns", "records of this run it read", "assigned (+), revoked (-)"],
        rows,
    );
    let shared_total = read[0].len() + read[1].len();
    out.say(format!(
        "   load balancing: {} read {shared_total} records between its two members (each once); \
         fan-out: {} and {} read {} and {}",
        shared,
        audit,
        search,
        read[2].len(),
        read[3].len()
    ));
    for member in [a, b, c, d] {
        member.leave().await?;
    }
    Ok(vec![shared, audit, search])
}
