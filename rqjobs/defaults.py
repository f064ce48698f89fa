"""Defaults as named constants with their units, in one place (the rq convention)."""

from __future__ import annotations

CONFIG_FILE_NAME = "rqjobs.toml"
DATA_DIR_NAME = ".rqjobs"
DATABASE_FILE_NAME = "rqjobs.sqlite3"

DEFAULT_QUEUE = "default"
DEFAULT_TIMEOUT_S = 180
DEFAULT_RETRIES = 0
DEFAULT_RETRY_INTERVAL_S = 0
DEFAULT_STATUS_LIMIT = 20
PROGRESS_INTERVAL_S = 0.5
RECONCILE_INTERVAL_S = 15.0
#: a queued row younger than this is never touched by reconcile: its enqueue may be under way
RECONCILE_GRACE_S = 60.0
#: a worker refreshes its liveness key in Redis every third of this; a key missing for this
#: long means the worker (or its machine) is gone
WORKER_LIVENESS_TTL_S = 15.0
#: a reconcile pass holds the cluster-wide reconcile lock at most this long (a holder on the
#: same machine that died is noticed at once; passes may overlap safely, they only repeat work)
RECONCILE_LOCK_TTL_S = 60.0
#: `rqjobs reconcile` waits this long for another reconcile pass to finish
RECONCILE_LOCK_WAIT_S = 30.0
#: a worker that lost Redis tries again at most this far apart
REDIS_RECONNECT_MAX_WAIT_S = 5.0
#: a burst worker gives up when Redis stays unreachable this long (a long-running worker waits)
BURST_REDIS_OUTAGE_LIMIT_S = 120.0
#: a work horse still running this long after its job's timeout fired is killed by the
#: worker (RQ hard-codes 60 s); the grace lets a timed-out task record its failure first
TIMEOUT_GRACE_S = 60.0
#: RQ keeps results and failures at least this long, so reconcile can read them
RESULT_TTL_S = 86_400
#: a task result larger than this, as JSON, fails its attempt for good (the same on every database)
MAX_RESULT_BYTES = 1_048_576
FAILURE_TTL_S = 7 * 86_400

#: socket timeouts for Redis so that a dead server fails a command fast
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_CONNECT_TIMEOUT_S = 3.0

#: SQLite waits this long for a lock before giving up
SQLITE_BUSY_TIMEOUT_S = 30.0
#: reads and writes of task rows keep retrying this long while the database is unreachable
DB_RETRY_S = 30.0
#: a PostgreSQL/MariaDB connection attempt gives up after this long (no hang on a dead host)
DB_CONNECT_TIMEOUT_S = 10
#: a row read or write whose retry budget is spent is still given this long to answer
DB_MIN_ATTEMPT_S = 2.0
#: PostgreSQL TCP keepalives (idle, interval, probes) and tcp_user_timeout: a peer gone from
#: the network is noticed in about 25 s, idle or not
DB_KEEPALIVE_IDLE_S = 10
DB_KEEPALIVE_INTERVAL_S = 5
DB_KEEPALIVE_COUNT = 3
DB_TCP_USER_TIMEOUT_S = 30.0
#: MariaDB/MySQL socket read and write timeouts (PyMySQL): a backstop; row reads and writes
#: are cut at their retry deadline anyway (rqjobs.store.watchdog)
DB_SOCKET_TIMEOUT_S = 300

EMBEDDED_REDIS_START_TIMEOUT_S = 10.0
EMBEDDED_REDIS_STOP_TIMEOUT_S = 10.0
#: a unix socket path must fit in sun_path (108 bytes with the NUL on Linux)
UNIX_SOCKET_MAX_BYTES = 100

MAIL_TIMEOUT_S = 30.0
URL_TIMEOUT_S = 20.0
URL_MAX_BYTES = 10 * 1024 * 1024
IMAGE_SIZES_PX = (64, 256, 1024)

# -- column limits: the schema (store/models.py) declares them, and enqueue checks them
#    first, so every database refuses the same input before a row is written --
NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 1000
QUEUE_MAX_CHARS = 200
PROGRESS_MESSAGE_MAX_CHARS = 1000
WORKER_MAX_CHARS = 200
SCHEDULE_MAX_CHARS = 200
#: a unique task's key (`--unique-key`, `unique_key=`; migration 0005)
UNIQUE_KEY_MAX_CHARS = 200
#: JSON integers beyond 64 bits are refused: not every database's JSON type holds them
JSON_INT_MAX = 2**63 - 1
