-- Claim functions installed by sqla_jobqueue in the given schemas, with the comment
-- that records their table and version. Read by the Alembic autogenerate comparator.
SELECT n.nspname AS schema_name,
       p.proname AS function_name,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = ANY (:schemas)
  AND p.pronargs = 3
  AND p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
  AND obj_description(p.oid, 'pg_proc') LIKE 'sqla\_jobqueue %'
