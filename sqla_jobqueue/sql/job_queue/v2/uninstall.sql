-- Removes what install.sql of version 2 created, in dependency order.
DROP TRIGGER IF EXISTS {trigger} ON {table}
-- statement
DROP FUNCTION IF EXISTS {notify_function}()
-- statement
DROP FUNCTION IF EXISTS {claim_signature}
