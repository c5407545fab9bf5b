//! MCP offers exactly the tools the agent's model gets (the Python MCP SDK
//! in tests/python checks the protocol itself).

use std::collections::BTreeSet;

#[test]
fn the_agents_tools_and_the_mcp_tools_are_the_same_set() {
    let agent: BTreeSet<String> = agent_service::agent::offered_tools()
        .iter()
        .map(|s| s.name.to_owned())
        .collect();
    let mcp: BTreeSet<String> = gateway::mcp::select_tools(false, None)
        .unwrap()
        .iter()
        .map(|spec| gateway::mcp::mcp_tool(spec).name.into_owned())
        .collect();
    assert_eq!(agent, mcp);
    assert_eq!(agent.len(), 6);
}
