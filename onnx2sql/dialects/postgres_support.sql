-- The functions compiled programs call that PostgreSQL lacks, named as DuckDB names them, and
-- IEEE versions of the maths functions PostgreSQL raises errors in. They live in the schema
-- onnx2sql, which a connection puts before pg_catalog in its search_path (after public, where
-- tables are made), so that exp(-1000) gives 0 as in DuckDB and onnxruntime instead of an
-- underflow error. Every function is one SQL expression, which PostgreSQL inlines into the query.
CREATE SCHEMA IF NOT EXISTS onnx2sql;

-- The symbolic dims of a run, set as onnx2sql.s0, onnx2sql.s1, .. (NULL when not set).
CREATE OR REPLACE FUNCTION onnx2sql.getvariable(name text) RETURNS bigint
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN CAST(nullif(current_setting('onnx2sql.' || name, true), '') AS bigint);

-- IEEE exp, ln and sqrt: 0 or inf where PostgreSQL would raise an underflow or overflow error,
-- -inf and NaN where it would raise for the logarithm or root of zero or a negative number.
CREATE OR REPLACE FUNCTION onnx2sql.exp(x double precision) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN CASE WHEN x < -745.2 THEN 0 WHEN x > 709.78 THEN 'Infinity'::double precision
              ELSE pg_catalog.exp(x) END;
CREATE OR REPLACE FUNCTION onnx2sql.ln(x double precision) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN CASE WHEN x > 0 THEN pg_catalog.ln(x) WHEN x = 0 THEN '-Infinity'::double precision
              ELSE 'NaN'::double precision END;
CREATE OR REPLACE FUNCTION onnx2sql.sqrt(x double precision) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN CASE WHEN x >= 0 OR x = 'NaN'::double precision THEN pg_catalog.sqrt(x)
              ELSE 'NaN'::double precision END;

CREATE OR REPLACE FUNCTION onnx2sql.isnan(x double precision) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN x = 'NaN'::double precision;
CREATE OR REPLACE FUNCTION onnx2sql.isinf(x double precision) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN x IN ('Infinity'::double precision, '-Infinity'::double precision);
CREATE OR REPLACE FUNCTION onnx2sql.onnx_erf(x double precision) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN erf(x);
-- Half to even, as ONNX's Round (PostgreSQL's round of a float8 is rint: ties to even).
CREATE OR REPLACE FUNCTION onnx2sql.round_even(x double precision, digits integer) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN pg_catalog.round(x * pg_catalog.power(10.0::double precision, digits))
         / pg_catalog.power(10.0::double precision, digits);
CREATE OR REPLACE FUNCTION onnx2sql.xor(a bigint, b bigint) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN a # b;

-- Lists: the sum, extremes and position of an array's elements, and its slice by step.
CREATE OR REPLACE FUNCTION onnx2sql.list_sum(v double precision[]) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN (SELECT sum(x) FROM unnest(v) AS e(x));
CREATE OR REPLACE FUNCTION onnx2sql.list_sum(v bigint[]) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN (SELECT CAST(sum(x) AS bigint) FROM unnest(v) AS e(x));
CREATE OR REPLACE FUNCTION onnx2sql.list_sum(v integer[]) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN (SELECT sum(x) FROM unnest(v) AS e(x));
CREATE OR REPLACE FUNCTION onnx2sql.list_max(v anycompatiblearray) RETURNS anycompatible
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (SELECT max(x) FROM unnest(v) AS e(x)) $$;
CREATE OR REPLACE FUNCTION onnx2sql.list_min(v anycompatiblearray) RETURNS anycompatible
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (SELECT min(x) FROM unnest(v) AS e(x)) $$;
-- The 1-based position of the first element equal to x (NULL when none is).
CREATE OR REPLACE FUNCTION onnx2sql.list_position(v anycompatiblearray, x anycompatible) RETURNS integer
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT array_position(v, x) $$;
-- Elements begin, begin + step, .. up to end (1-based, inclusive), as DuckDB's list_slice.
CREATE OR REPLACE FUNCTION onnx2sql.list_slice(v anycompatiblearray, first integer, last integer, step integer)
  RETURNS anycompatiblearray
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ARRAY(SELECT v[k] FROM generate_series(first, last, step) WITH ORDINALITY AS s(k, n) ORDER BY n) $$;

-- The first value of a group in the aggregate's ORDER BY.
CREATE OR REPLACE FUNCTION onnx2sql.keep_first(kept anyelement, next anyelement) RETURNS anyelement
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT kept $$;
CREATE OR REPLACE AGGREGATE onnx2sql.first(anyelement) (SFUNC = onnx2sql.keep_first, STYPE = anyelement);

-- A group's arrays joined end to end, in the aggregate's ORDER BY.
CREATE OR REPLACE AGGREGATE onnx2sql.onnx2sql_concat_agg(anycompatiblearray) (
  SFUNC = array_cat, STYPE = anycompatiblearray, INITCOND = '{}'
);
