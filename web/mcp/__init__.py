"""The MCP face of the server: JSON-RPC dispatch (protocol), the two transports (`/sse` + `/messages`,
and Streamable HTTP `/mcp`), sessions and their resumable answers, origin checks, and the tool table.
"""
