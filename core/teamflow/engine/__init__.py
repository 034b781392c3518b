"""The engine: tasks, steps, leases, retries and child workflows.

- ``engine``: requests to durable tasks, reading them back, operator actions
- ``children``: child tasks across namespaces, parking
- ``context``: ``StepContext``, what a handler may use
- ``events``: ``teamflow_task_event`` after each commit
- ``execute``: one claimed step, its handler, its outcome
- ``group_commit``: outcomes and new tasks sharing commits
- ``housekeeping``: timers, claims, leases, timeouts, the reaper
- ``work``: what a runner's threads share
- ``runner``: the step threads, wired from the above
"""
