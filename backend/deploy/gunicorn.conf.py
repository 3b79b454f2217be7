"""gunicorn's settings for `fieldcase serve`: the one home of these values.

`fieldcase serve` reads this file (the copy inside the installed package, or the one `--config` names: the unit
fieldcase-serve.service passes /etc/fieldcase/gunicorn.conf.py, written by `fieldcase deploy-files`), and its
`--host`, `--port`, `--workers` and `--threads` win over it. Any other gunicorn setting may be added here by its
gunicorn name. `serve` itself fixes what the app relies on, whatever this file says: gthread workers, the log
lines on stderr in fieldcase's own format, PROTOCOL's header limit (16 KiB, else `431`), no control socket.
Run it as `fieldcase serve`, not as plain `gunicorn`: serve also checks the settings, the secret files and the
schema first, and serves the metrics.
"""

# Where the API listens: behind a load balancer, the host's private address (or 0.0.0.0) and its port.
bind = "127.0.0.1:8000"

# Processes × threads: size workers to the host's cores (docs/deployment.md, "Throughput"). Each worker holds up to
# FIELDCASE_DB_POOL_SIZE + FIELDCASE_DB_MAX_OVERFLOW database connections.
workers = 2
threads = 4

# A worker silent this long is killed and replaced (a stuck request); the slowest push takes seconds.
timeout = 120

# On SIGTERM (systemd's stop), requests in flight get this long to finish before their worker is killed. The
# unit's TimeoutStopSec must be longer, or systemd kills the whole process first (tests/web/test_deploy_units.py).
graceful_timeout = 20
