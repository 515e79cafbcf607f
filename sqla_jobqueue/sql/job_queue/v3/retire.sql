-- Removes what version 3 added to version 2, before version 2 is installed over it.
DROP TRIGGER IF EXISTS {finished_trigger} ON {table}
-- statement
DROP FUNCTION IF EXISTS {finished_function}()
-- statement
DROP FUNCTION IF EXISTS {settle_signature}
