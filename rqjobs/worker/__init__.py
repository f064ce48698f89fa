"""The rqjobs worker, in modules with one job each (see docs/ARCHITECTURE.md):

* :mod:`~rqjobs.worker.process`: is a process alive, children dying with their parent;
* :mod:`~rqjobs.worker.liveness`: the liveness key and the view of it reconcile reads;
* :mod:`~rqjobs.worker.health`: the mixin that keeps liveness, reconciles, rides out outages;
* :mod:`~rqjobs.worker.rq_worker`: RQ's forking worker class and ``run_worker``;
* :mod:`~rqjobs.worker.supervisor`: restarts RQ's loop after a Redis outage;
* :mod:`~rqjobs.worker.pool`: ``--workers N`` on RQ's WorkerPool.

Nothing is imported here, so that reconcile can use liveness without importing RQ's worker.
"""
