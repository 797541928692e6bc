-- One counter every Berth process polls (about once a second): it moves whenever sessions are
-- ended (an account disabled, a logout), so a process whose forwardAuth cache still holds such
-- a session drops it within a second or two, not at the cache's 30-second expiry.
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY,
    counter BIGINT NOT NULL
);
INSERT INTO revocations (id, counter) VALUES (1, 0);
