"""OAuth 2.1 for MCP clients that cannot hold a static token (Claude.ai): metadata, registration,
consent, codes and tokens (views), and their storage (store)."""
