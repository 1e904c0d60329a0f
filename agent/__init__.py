"""Code Remote's agent: a daemon on the user's machine that long-polls the server for commands, runs
them and posts the results. It needs only `requests` and never imports the server's code."""

VERSION = "0.1.0"
