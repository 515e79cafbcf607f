-- Removes what version 4 added to version 3, before version 3 is installed over it.
DROP FUNCTION IF EXISTS {limited_claim_signature}
