"""Worker processes: more cores for the same listeners.

``zpop.cluster.pool`` is the main process's side, ``zpop.cluster.worker``
the worker's (``python -m zpop.cluster.worker``, started by the pool), and
``zpop.cluster.pipe`` the lines they exchange.

One Twisted process uses one core. With ``[server] workers = N`` the main
process (the one ``twistd`` runs) starts N-1 more, hands each its listening
sockets, and all of them accept from those sockets. A worker has the same
configuration, data directory and database, so what sessions must share
already is shared: bans and failure counters live in the database,
maildrop locks are kernel locks on a file beside it (``zpop.store.locks``),
and a credential change reaches every process's caches through the
store's change counter (``zpop.store.changes``). Only the main process
relays outbound mail; a worker that queued some tells it through a pipe.
A password verified in one process is told to the others through the main
process, so each polling client still costs one bcrypt per cache period,
whichever process its connections land in.

A worker writes its log events, formatted, as JSON lines to its standard
output; the main process publishes them in its own log, marked
``[worker N: namespace#level]``. A worker
stops when its standard input, a pipe from the main process, closes, so it
never outlives the main process, even one killed with SIGKILL. The main
process restarts a worker that dies, waiting longer each time one dies
soon after starting.
"""

