-- v2: the fleet. Older binaries (v1) may keep running against it: nothing they use changed.
-- Every `tandem run` registers here and renews `seen_at` with its leases.
CREATE TABLE tandem_daemons (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    control text,
    capacity integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
);

-- One row per sync: who owns it until when. `epoch` grows at every claim; a run's commits
-- check it in their own transaction (fencing), so a daemon that lost the lease writes
-- nothing. `wake_at`: a run was asked for (trigger, webhook) through another daemon.
CREATE TABLE tandem_leases (
    sync text PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    claimed_at timestamptz,
    wake_at timestamptz
);
CREATE INDEX tandem_leases_owner ON tandem_leases (owner);
