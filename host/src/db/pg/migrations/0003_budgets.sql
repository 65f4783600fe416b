-- v3: one request budget per app account across the fleet (app/budget.rs, docs/fleet.md).
-- Older binaries (v2) may keep running against it: nothing they use changed (they do not
-- take part in the shared budget, though: upgrade every daemon that shares an account).

-- One row per app account: what any daemon saw that every daemon must respect.
CREATE TABLE tandem_budgets (
    account text PRIMARY KEY,
    -- A 429's Retry-After: no daemon is granted anything before this.
    blocked_until timestamptz,
    -- The app's own count (`X-RateLimit-*`) in the newest response any daemon read.
    app_remaining bigint,
    app_limit bigint,
    app_reset_at timestamptz,
    app_seen_at timestamptz,
    app_daemon text,
    -- Seconds of grants kept (the longest window plus a block's lifetime seen so far).
    horizon double precision NOT NULL DEFAULT 0
);

-- The log of blocks of requests granted to daemons, by the database's clock, taken while
-- the account's row is locked (so grants are logged in the order they are made). Grants
-- older than the shortest window are merged per bucket (`daemon` = '').
CREATE TABLE tandem_budget_grants (
    account text NOT NULL,
    granted_at timestamptz NOT NULL,
    n integer NOT NULL,
    daemon text NOT NULL
);
CREATE INDEX tandem_budget_grants_account ON tandem_budget_grants (account, granted_at);

-- Leases a block of up to `p_want` requests of `p_account` to `p_daemon`, in one round
-- trip. A block may be spent for `p_expiry` seconds after its grant, so, to keep every
-- interval of S seconds within N requests (window i: `p_limits[i]` per `p_periods[i]`
-- seconds), the grants of any (S + expiry) seconds never exceed N. Also records what the
-- caller saw (a 429's wait `p_blocked`; an app count `p_remaining`/`p_limit`/`p_reset`
-- seconds from now, seen `p_age` seconds ago) and returns what the fleet saw.
-- `p_want = 0` only records and reads.
CREATE FUNCTION tandem_budget_lease(
    p_account text,
    p_daemon text,
    p_limits integer[],
    p_periods double precision[],
    p_expiry double precision,
    p_want integer,
    p_blocked double precision,
    p_remaining bigint,
    p_limit bigint,
    p_reset double precision,
    p_age double precision
) RETURNS TABLE (
    o_granted integer,
    o_wait double precision,
    o_blocked double precision,
    o_app_remaining bigint,
    o_app_limit bigint,
    o_app_reset double precision,
    o_app_seen double precision,
    o_app_daemon text
) LANGUAGE plpgsql AS $fn$
DECLARE
    r tandem_budgets%ROWTYPE;
    t timestamptz;
    i integer;
    v_used bigint;
    v_free bigint := greatest(p_want, 0);
    v_wait double precision := 0;
    v_edge timestamptz;
    v_span interval;
    v_longest double precision := p_expiry;
    v_smallest bigint;
    v_daemons integer;
    v_left bigint;
    v_short double precision;
    v_bucket bigint;
BEGIN
    INSERT INTO tandem_budgets AS b (account) VALUES (p_account)
        ON CONFLICT (account) DO NOTHING;
    SELECT * INTO r FROM tandem_budgets AS b WHERE b.account = p_account FOR UPDATE;
    -- Read after the lock: grants are logged in the order they are made.
    t := clock_timestamp();

    IF p_blocked IS NOT NULL THEN
        r.blocked_until := greatest(r.blocked_until, t + make_interval(secs => p_blocked));
    END IF;
    IF p_remaining IS NOT NULL
        AND (r.app_seen_at IS NULL OR t - make_interval(secs => p_age) >= r.app_seen_at) THEN
        r.app_remaining := p_remaining;
        r.app_limit := p_limit;
        r.app_reset_at := t + make_interval(secs => p_reset);
        r.app_seen_at := t - make_interval(secs => p_age);
        r.app_daemon := p_daemon;
    END IF;
    IF r.app_reset_at IS NOT NULL AND r.app_reset_at <= t THEN
        -- The app's window is over: its count no longer holds.
        r.app_remaining := NULL;
        r.app_limit := NULL;
        r.app_reset_at := NULL;
        r.app_seen_at := NULL;
        r.app_daemon := NULL;
    END IF;
    IF r.app_seen_at IS NOT NULL THEN
        -- The app had not counted the blocks granted since.
        SELECT r.app_remaining - coalesce(sum(g.n), 0) INTO v_left
            FROM tandem_budget_grants AS g
            WHERE g.account = p_account AND g.granted_at > r.app_seen_at;
    END IF;

    IF r.blocked_until IS NOT NULL AND r.blocked_until > t THEN
        v_free := 0;
    ELSIF v_free > 0 THEN
        FOR i IN 1 .. coalesce(array_length(p_limits, 1), 0) LOOP
            v_span := make_interval(secs => p_periods[i] + p_expiry);
            v_longest := greatest(v_longest, p_periods[i] + p_expiry);
            v_smallest := least(v_smallest, p_limits[i]);
            v_short := least(v_short, p_periods[i] + p_expiry);
            SELECT coalesce(sum(g.n), 0) INTO v_used
                FROM tandem_budget_grants AS g
                WHERE g.account = p_account AND g.granted_at > t - v_span;
            IF v_used >= p_limits[i] THEN
                v_free := 0;
                -- Room again when the newest grant that keeps the window full leaves it.
                SELECT x.at INTO v_edge FROM (
                    SELECT g.granted_at AS at,
                           sum(g.n) OVER (ORDER BY g.granted_at DESC ROWS UNBOUNDED PRECEDING) AS c
                    FROM tandem_budget_grants AS g
                    WHERE g.account = p_account AND g.granted_at > t - v_span
                ) AS x WHERE x.c >= p_limits[i] ORDER BY x.at DESC LIMIT 1;
                v_wait := greatest(v_wait, extract(epoch FROM v_edge + v_span - t));
            ELSE
                v_free := least(v_free, p_limits[i] - v_used);
            END IF;
        END LOOP;
        IF v_free > 0 AND v_smallest IS NOT NULL THEN
            -- Blocks small against the limit, so that the daemons using the account share it.
            SELECT count(DISTINCT g.daemon) INTO v_daemons
                FROM tandem_budget_grants AS g
                WHERE g.account = p_account AND g.granted_at > t - make_interval(secs => v_longest)
                  AND g.daemon <> p_daemon AND g.daemon <> '';
            v_free := least(v_free, greatest(1, v_smallest / (8 * (v_daemons + 1))));
            INSERT INTO tandem_budget_grants (account, granted_at, n, daemon)
                VALUES (p_account, t, v_free, p_daemon);
        END IF;
    END IF;

    r.horizon := greatest(r.horizon, v_longest);
    IF v_short IS NOT NULL THEN
        -- Grants older than the shortest window matter only to longer ones: they are
        -- merged into one row per bucket of whole seconds (at least the shortest span, or
        -- 1/64 of the horizon), dated at the bucket's end. Later is conservative (a grant
        -- then counts longer), so the guarantee holds; long windows may be under-used by
        -- up to a bucket, and the log stays small (daemon '' marks merged rows).
        v_bucket := ceil(greatest(v_short, r.horizon / 64))::bigint;
        WITH b AS (
            SELECT DISTINCT ceil(extract(epoch FROM g.granted_at) / v_bucket) * v_bucket AS e
            FROM tandem_budget_grants AS g
            WHERE g.account = p_account AND g.daemon <> ''
              AND g.granted_at <= t - make_interval(secs => v_short + v_bucket)
        ), gone AS (
            DELETE FROM tandem_budget_grants AS g USING b
            WHERE g.account = p_account
              AND ceil(extract(epoch FROM g.granted_at) / v_bucket) * v_bucket = b.e
            RETURNING b.e AS e, g.n AS n
        )
        INSERT INTO tandem_budget_grants (account, granted_at, n, daemon)
            SELECT p_account, to_timestamp(gone.e::double precision), sum(gone.n), ''
            FROM gone GROUP BY gone.e;
    END IF;
    DELETE FROM tandem_budget_grants AS g
        WHERE g.account = p_account AND g.granted_at <= t - make_interval(secs => r.horizon);
    UPDATE tandem_budgets AS b SET
        blocked_until = r.blocked_until,
        app_remaining = r.app_remaining,
        app_limit = r.app_limit,
        app_reset_at = r.app_reset_at,
        app_seen_at = r.app_seen_at,
        app_daemon = r.app_daemon,
        horizon = r.horizon
        WHERE b.account = p_account;

    RETURN QUERY SELECT
        v_free::integer,
        v_wait,
        greatest(0, extract(epoch FROM r.blocked_until - t))::double precision,
        v_left,
        r.app_limit,
        extract(epoch FROM r.app_reset_at - t)::double precision,
        extract(epoch FROM r.app_seen_at)::double precision,
        r.app_daemon;
END
$fn$;
