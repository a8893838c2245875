-- Secrets of the venue (hex), made once at random by the first node that asks (secret.rs):
-- the key of the order ids derived from clients' ids. A journal older than this table gets its
-- key at its first start with it: a command id retried across that upgrade names a new order.
CREATE TABLE venue_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL
);
