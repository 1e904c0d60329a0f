"""The owner's console: the dashboard under /dashboard and the Prometheus figures at /metrics.

Everything shown is read from the database (command, command_event, command_output, tool_call,
process_stat), so a page served by one server process sees what another one did.
"""
