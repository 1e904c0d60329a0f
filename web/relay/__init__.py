"""The durable queue between MCP tool calls and agents: submit, lease, start, progress, complete, wait.

No Flask in here: the MCP tools and the agent API call into it. Commands and their transitions live in
the database; wake-ups that cross processes go through the bus (web/bus.py).
"""
