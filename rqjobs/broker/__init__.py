"""Everything rqjobs needs from Redis: connections, the embedded redis-server, queues and the worker."""
