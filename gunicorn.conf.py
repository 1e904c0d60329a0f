"""gunicorn settings for Code Remote (read by `gunicorn -c gunicorn.conf.py wsgi:app`).

One gevent worker serves thousands of held long-polls and SSE streams; MCP sessions and wake-ups live
in that worker's memory, so keep `workers = 1` unless sessions are made shared. Never use `preload_app`
with gevent: the app would be imported before gevent patches the standard library.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Past this many open connections new requests hang instead of failing: size it for held polls+streams.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "4000"))
# With gevent, `timeout` is the worker's own heartbeat, not a per-request limit: long polls are fine.
timeout = 60
graceful_timeout = 30
keepalive = 75
preload_app = False
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
