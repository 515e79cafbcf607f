-- Removes what install.sql of version 4 created, in dependency order.
DROP TRIGGER IF EXISTS {finished_trigger} ON {table}
-- statement
DROP FUNCTION IF EXISTS {finished_function}()
-- statement
DROP FUNCTION IF EXISTS {settle_signature}
-- statement
DROP TRIGGER IF EXISTS {trigger} ON {table}
-- statement
DROP FUNCTION IF EXISTS {notify_function}()
-- statement
DROP FUNCTION IF EXISTS {claim_signature}
-- statement
DROP FUNCTION IF EXISTS {limited_claim_signature}
