"""Recurring tasks: ``[[schedule]]`` tables in rqjobs.toml, fired by every worker's ticker.

* :mod:`rqjobs.schedules.spec`: the spec model, its validation and tick arithmetic
  (croniter + zoneinfo for cron, epoch-aligned intervals for ``every``);
* :mod:`rqjobs.schedules.ticker`: what a worker does when ticks come due (the unique
  constraint on ``(schedule, schedule_tick)`` decides which worker makes each row);
* :mod:`rqjobs.schedules.service`: the operator's actions (list, run now, pause, resume).

Nothing here imports croniter, SQLAlchemy, rq or redis at import time.
"""
