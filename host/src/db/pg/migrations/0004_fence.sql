-- v4: the fence check as one statement that fails when the lease is no longer held, so
-- that a run's commit goes in one round trip (BEGIN, check, writes and COMMIT sent
-- together): the check raises, the transaction is aborted, and its COMMIT rolls back.
-- Older binaries (v3) keep running against it: nothing they use changed.
CREATE FUNCTION tandem_fence(p_sync text, p_owner text, p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- FOR SHARE: a takeover (which raises the epoch) waits for this commit, or has
    -- already made the check fail.
    PERFORM 1 FROM tandem_leases
     WHERE sync = p_sync AND owner = p_owner AND epoch = p_epoch
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tandem: sync % is no longer held at epoch %', p_sync, p_epoch
            USING ERRCODE = 'TD001';
    END IF;
END
$$;
