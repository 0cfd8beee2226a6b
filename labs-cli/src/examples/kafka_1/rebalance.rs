//! `rebalance`: members join a group one by one and one leaves; after each change the group
//! coordinator reassigns the partitions, and the lab prints who owns which, and what each member
//! was assigned and had revoked.

use anyhow::Result;

use super::{
    Produced, consume_together, describe_events, group_name, owners_rows, settle_together, start_group_at_run,
};
use crate::driver::kafka::{GroupMember, Incoming};
use crate::output::Output;

pub(super) const NAME: &str = "rebalance";

pub(super) async fn run(bootstrap: &str, topic: &str, produced: &Produced, out: Output) -> Result<Vec<String>> {
    let group = group_name(topic, produced.run.seed, "rebalance");
    out.say(format!("rebalance: members join {group} one by one, then one leaves"));
    start_group_at_run(bootstrap, topic, &group, produced).await?;
    let mut read: Vec<Incoming> = Vec::new();
    let mut members: Vec<GroupMember> = Vec::new();
    let mut steps = Vec::new();
    for name in ["member-1", "member-2", "member-3"] {
        members.push(GroupMember::join(bootstrap, &group, name, topic)?);
        let live: Vec<&GroupMember> = members.iter().collect();
        // Joining triggers a rebalance: every member must poll to take part.
        for (member, records) in live.iter().zip(settle_together(&live, produced).await?) {
            member.commit(&records)?;
            read.extend(records);
        }
        steps.push((format!("{name} joined"), owners_rows(&live)?));
    }
    let leaving = members.remove(1);
    leaving.leave().await?;
    let live: Vec<&GroupMember> = members.iter().collect();
    for (member, records) in live.iter().zip(settle_together(&live, produced).await?) {
        member.commit(&records)?;
        read.extend(records);
    }
    steps.push(("member-2 left".to_owned(), owners_rows(&live)?));
    // The rest of the run, read by whoever owns it now.
    let rest = consume_together(&live, produced.run.count.saturating_sub(read.len())).await?;
    for (member, records) in live.iter().zip(rest) {
        member.commit(&records)?;
        read.extend(records);
    }
    let rows = steps.into_iter().flat_map(|(step, owners)| {
        owners.into_iter().map(move |owner| vec![step.clone(), owner[0].clone(), owner[1].clone()])
    });
    out.table(&format!("Who owns which partition of {topic}"), &["after", "member", "partitions"], rows);
    out.table(
        "What each member was assigned (+) and had revoked (-), in order",
        &["member", "rebalance callbacks"],
        members.iter().map(|m| vec![m.name.clone(), describe_events(&m.events())]),
    );
    out.say(format!("   {} records of the run read across the rebalances, committed by their readers", read.len()));
    for member in members {
        member.leave().await?;
    }
    Ok(vec![group])
}
