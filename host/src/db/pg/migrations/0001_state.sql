-- v1: the engine's tables and the plugins' storage.
-- The engine's tables (links, baselines, cursors, outbox, retries, tombstones, runs and
-- events) are one key-value table: `tbl` names the table, `k` holds the key bytes (sync
-- name, NUL, the rest; bytewise order, as in the redb file) and `v` the row's JSON.
CREATE TABLE tandem_kv (
    tbl text NOT NULL,
    k bytea NOT NULL,
    v bytea NOT NULL,
    PRIMARY KEY (tbl, k)
);

-- The `storage` host interface: one namespace per (owner, connection).
CREATE TABLE tandem_plugin_store (
    owner text NOT NULL,
    connection text NOT NULL,
    k bytea NOT NULL,
    v bytea NOT NULL,
    PRIMARY KEY (owner, connection, k)
);
CREATE TABLE tandem_plugin_usage (
    owner text NOT NULL,
    connection text NOT NULL,
    bytes bigint NOT NULL,
    keys bigint NOT NULL,
    PRIMARY KEY (owner, connection)
);
