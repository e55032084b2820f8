-- Cairn catalog, PostgreSQL, migration 4: what a node reports with its heartbeat, for
-- operators (`sync-server admin nodes`). Nothing routes on these columns: the load balancer
-- picks nodes by their health checks, and any node serves any project.
--
-- version:  the node's sync-server version, so a rolling upgrade can be watched.
-- started:  when the process started.
-- draining: set once the node received SIGTERM; it is about to deregister.
-- stats:    a JSON object of the node's figures at its last heartbeat (its hot cache: hits,
--           misses, evictions, bytes, objects, capacity; its open event streams), as
--           `NodeStats` reads it; a newer node may add keys an older one ignores.
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN started TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE nodes ADD COLUMN draining BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE nodes ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
