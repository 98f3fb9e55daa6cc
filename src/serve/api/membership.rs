//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups: the classic group
//! protocol over `groups.rs`'s coordinator.

use crate::serve::Shared;
use crate::serve::groups::Join;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub(in crate::serve) fn join(r: JoinGroupRequest, client_id: &str, sh: &Shared) -> JoinGroupResponse {
    let join = Join {
        group: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        client_id: client_id.to_string(),
        protocol_type: r.protocol_type.to_string(),
        protocols: r.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: if r.rebalance_timeout_ms > 0 { r.rebalance_timeout_ms } else { r.session_timeout_ms },
    };
    let j = sh.groups.join(join);
    let members = j
        .members
        .into_iter()
        .map(|(id, metadata)| JoinGroupResponseMember::default().with_member_id(s(&id)).with_metadata(metadata))
        .collect();
    JoinGroupResponse::default()
        .with_error_code(j.error_code)
        .with_generation_id(if j.error_code == 0 { j.generation } else { -1 })
        .with_protocol_type(Some(r.protocol_type))
        .with_protocol_name(j.protocol.as_deref().map(s))
        .with_leader(s(&j.leader))
        .with_member_id(s(&j.member_id))
        .with_members(members)
}

pub(in crate::serve) fn sync(r: SyncGroupRequest, sh: &Shared) -> SyncGroupResponse {
    let assignments = r.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let (error_code, assignment) = sh.groups.sync(&r.group_id.0, r.generation_id, &r.member_id, assignments);
    SyncGroupResponse::default()
        .with_error_code(error_code)
        .with_protocol_type(r.protocol_type)
        .with_protocol_name(r.protocol_name)
        .with_assignment(assignment)
}

pub(in crate::serve) fn heartbeat(r: HeartbeatRequest, sh: &Shared) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(sh.groups.heartbeat(&r.group_id.0, r.generation_id, &r.member_id))
}

pub(in crate::serve) fn leave(r: LeaveGroupRequest, sh: &Shared) -> LeaveGroupResponse {
    if r.members.is_empty() {
        let codes = sh.groups.leave(&r.group_id.0, &[r.member_id.to_string()]);
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let ids: Vec<String> = r.members.iter().map(|m| m.member_id.to_string()).collect();
    let codes = sh.groups.leave(&r.group_id.0, &ids);
    let members = r
        .members
        .into_iter()
        .zip(codes)
        .map(|(m, c)| MemberResponse::default().with_member_id(m.member_id).with_error_code(c))
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub(in crate::serve) fn list(sh: &Shared) -> ListGroupsResponse {
    let mut listed = sh.groups.list();
    // Groups with committed offsets and no member over the wire (the embedded API's, or a
    // client's that left) are listed too, Empty, as Kafka lists a group that only has offsets.
    let stored = sh.store.inner().state.all_group_names().unwrap_or_default();
    for (_, group) in stored {
        if !listed.iter().any(|(g, _, _)| *g == group) {
            listed.push((group, "consumer".to_string(), crate::serve::groups::State::Empty));
        }
    }
    let groups = listed
        .into_iter()
        .map(|(name, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(&name)))
                .with_protocol_type(s(&protocol_type))
                .with_group_state(s(state.name()))
                .with_group_type(s("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(in crate::serve) fn describe(r: DescribeGroupsRequest, sh: &Shared) -> DescribeGroupsResponse {
    let groups = r
        .groups
        .into_iter()
        .map(|g| match sh.groups.describe(&g.0) {
            Some(view) => {
                let members = view
                    .members
                    .into_iter()
                    .map(|(id, client, metadata, assignment)| {
                        DescribedGroupMember::default()
                            .with_member_id(s(&id))
                            .with_client_id(s(&client))
                            .with_client_host(s("/127.0.0.1"))
                            .with_member_metadata(metadata)
                            .with_member_assignment(assignment)
                    })
                    .collect();
                DescribedGroup::default()
                    .with_group_id(g)
                    .with_group_state(s(view.state.name()))
                    .with_protocol_type(s(&view.protocol_type))
                    .with_protocol_data(s(&view.protocol))
                    .with_members(members)
            }
            // A group known only by its committed offsets: empty, as Kafka shows it.
            None => DescribedGroup::default().with_group_id(g).with_group_state(s("Empty")),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
