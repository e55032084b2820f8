-- Cairn catalog, embedded SQLite, migration 4: what a node reports with its heartbeat, as
-- ../0004_node_status.sql (read its comments), in SQLite's dialect: times are integer
-- milliseconds since the Unix epoch, booleans 0 or 1.
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN started INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1));
ALTER TABLE nodes ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
